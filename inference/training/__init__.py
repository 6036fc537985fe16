"""Training and evaluating Bayesian U-Net model bundles (needs the ``unet`` extra: torch, safetensors).

* `datasets` - cases as NIfTI pairs or DICOM series with DICOM-SEG / NIfTI labels, label mapping files;
* `augment` - augmentation that keeps anatomy honest;
* `train` - the training loop with validation Dice, checkpoints and resume; writes a bundle;
* `evaluate` - Dice and volume error per structure of a bundle on a data folder.

The package's modules import torch; this file does not, so that ``sarcoscreen train`` can say which extra is
missing.
"""
