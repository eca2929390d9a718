"""Training and evaluation of bundles. Import the modules themselves; this package imports nothing.

    config    TrainConfig and its checks (no torch)
    data      manifests, splits, cached speech features
    losses    InfoNCE, distillation, the temperature clamp
    augment   waveform and feature augmentations
    optim     seeding, learning-rate schedule, parameter groups, AdamW
    towers    the image/text tower phase
    speech    the speech-head phase and its feature cache
    loop      train_bundle(): the run, its checkpoints and its report
    evaluate  recall@K of a bundle on a manifest split
"""
