"""Training: the shared loop, the per-method trainers, validation on synthetic anomalies and
setting selection. ``decodemo.methods`` holds only the math and the networks.

- :mod:`decodemo.training.loop`: the ``accelerate`` training loop (checkpoints, resume, progress).
- :mod:`decodemo.training.split`: the seeded fit / validation split of ``train/good``.
- :mod:`decodemo.training.prepare`: that split loaded as a config's model inputs.
- :mod:`decodemo.training.validation`: the synthetic validation set, candidates, the selection
  rule and the per-file scores thresholds come from.
- :mod:`decodemo.training.invad`, ``recon``, ``decodiff``, ``baseline``: one trainer per method;
  :mod:`decodemo.training.vae` trains DeCo-Diff's latent space.
"""

from decodemo.training.loop import TrainSettings, make_accelerator, resolve_device, train_loop
from decodemo.training.split import split_normal

__all__ = ["TrainSettings", "make_accelerator", "resolve_device", "train_loop", "split_normal"]
