# Copyright (c) bdl_mm contributors. Owned by the module authors: import each registered class here.
from .output_discriminator import OutputDiscriminator, check_num_classes

__all__ = ['OutputDiscriminator', 'check_num_classes']
