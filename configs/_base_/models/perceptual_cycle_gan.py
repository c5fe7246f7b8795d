# Translation model F of BDL (Eq. 2): MMagic's CycleGAN (ResNet generator, 9 residual blocks, 64 filters, instance
# norm; 70x70 PatchGAN with 3 layers; LSGAN; image pool 50) plus the perceptual loss through the frozen
# segmentation model M. Values of the authors' release (pytorch-CycleGAN options + cyclegan/cycle_gan_model.py).
# Domains: 'source' (GTA5 / SYNTHIA, pytorch-CycleGAN's A) and 'target' (Cityscapes, B); generators['target']
# is the source -> target translator used to build S' = F(S).
model = dict(
    type='mmagic.PerceptualCycleGAN',
    # Generator range [-1, 1], RGB like pytorch-CycleGAN (images are loaded BGR and converted here), so
    # checkpoints converted with tools/model_converters/cyclegan_pytorch.py run unchanged.
    data_preprocessor=dict(
        type='mmagic.DataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        output_channel_order='RGB',
        data_keys=['img_source', 'img_target']),
    generator=dict(
        type='mmagic.ResnetGenerator',
        in_channels=3,
        out_channels=3,
        base_channels=64,
        norm_cfg=dict(type='IN'),
        use_dropout=False,
        num_blocks=9,
        padding_mode='reflect',
        init_cfg=dict(type='normal', gain=0.02)),
    discriminator=dict(
        type='mmagic.PatchDiscriminator',
        in_channels=3,
        base_channels=64,
        num_conv=3,
        norm_cfg=dict(type='IN'),
        init_cfg=dict(type='normal', gain=0.02)),
    default_domain='target',
    reachable_domains=['source', 'target'],
    related_domains=['source', 'target'],
    buffer_size=50,
    # MMagic multiplies the identity L1 by id_loss_weight alone; pytorch-CycleGAN by lambda_identity (0.5) times
    # the cycle weight (10): 5.0 reproduces the release.
    loss_config=dict(cycle_loss_weight=10., id_loss_weight=5.),
    # M(k-1): an MMSeg model config (dict, or path of a config whose `model` is used, BDLSegmentor included) and
    # its checkpoint (an MMSeg or a BDLSegmentor checkpoint); set checkpoint per round (Algorithm 1).
    segmentor=dict(config='{{ fileDirname }}/deeplabv2_r101.py', checkpoint=None, num_classes=19),
    # M's input format: not written here, it follows M's data_preprocessor (DeepLabV2: BGR 0-255 minus the caffe mean,
    # as the release); a seg_input=dict(mean=..., std=..., channel_order=...) set here is checked against it at build.
    # Release: MSE between instance-normalised logits; the paper's L1 is distance='l1'.
    perceptual_loss=dict(lambda_per=0.1, lambda_per_recon=10., distance='mse_instance_norm', batch_mode='split'),
    # Release (pytorch-CycleGAN optimize_parameters): generators updated first, then discriminators; MMagic's own
    # order is 'discriminators_first'.
    update_order='generators_first')
