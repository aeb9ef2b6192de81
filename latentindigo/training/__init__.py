"""Training on the CPU: the VAE and UNet of the bundled prior, the INNs with the estimator `F`, and the
first-stage restorer `R` (which also trains on a GPU, fed by worker processes: `restorer.RestorerBatches`).

`data` draws the photo crops and their degraded pairs, `loop` is the resumable loop every trainer shares, and
each other module trains one network: `autoencoder` (the VAE and its decoder fine-tune), `denoiser` (the UNet
and the bundled prior's export), `pixel_inn` (the PixelINN with `F`), `latent_inn` (the LatentINN of one VAE)
and `restorer`. The runtime never imports this package, except `latentindigo.calibration`, which fits a VAE's
LatentINN on its first use.

Every loop is resumable: `OUT/checkpoint.safetensors` holds the weights and the optimiser state
(safetensors, so resuming never unpickles anything) and `OUT/checkpoint.json` the step and settings.
Run `python -m scripts.build_photoset` first; the photos come from `data/photos/{train,val}`.
"""
