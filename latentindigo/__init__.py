"""LatentINDIGO: INN-guided latent diffusion for image restoration."""
