# Copyright (c) bdl_mm contributors. Owned by the module authors: import each registered class here.
from .deeplabv2_resnet import DeepLabV2ResNet
from .vgg16_fcn import VGG16FCN

__all__ = ['DeepLabV2ResNet', 'VGG16FCN']
