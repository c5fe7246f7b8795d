# Output-space discriminator D_M (release: model/discriminator.py FCDiscriminator): five 4x4 stride-2 convs,
# 64-128-256-512-1 channels, LeakyReLU(0.2) after all but the last. in_channels must equal M's num_classes
# (checked when the BDL segmentor is built).
discriminator = dict(type='OutputDiscriminator', in_channels=19, base_channels=64, negative_slope=0.2)
