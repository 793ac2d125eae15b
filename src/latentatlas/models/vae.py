"""The VAE family's network: encoder, pose-aware decoder, and the loss.

Plain VAE, shift-VAE and rVAE are the same module with different pose latents switched on
(see VAEConfig). The module is pure torch: no training loop, no files, no plotting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from latentatlas.models.config import VAEConfig
from latentatlas.models.losses import (
    LossRecord,
    Penalty,
    PenaltyInput,
    normal_kl,
    reconstruction_nll,
)
from latentatlas.nn.decoders import build_decoder
from latentatlas.nn.encoders import ENCODERS, PolarAngleHead
from latentatlas.nn.pose import invert_affine, inverse_pose_matrix, random_pose_matrix, warp


class VAEModule(nn.Module):
    """q(latents | x) by the encoder; p(x | content, pose) by the decoder.

    Batches are dicts: ``x`` (n, c, *spatial) and, for conditional models, ``condition``
    (n, condition_dim).
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.names = config.latent_names
        self.n_pose = len(self.names) - config.latent_dim
        self.equivariant = config.rotation and config.equivariant_angle
        if self.equivariant:
            self.encoder = ENCODERS[config.encoder](
                config.input_shape, 2 * self.n_pose, config.hidden, config.layers)
            self.content_encoder = ENCODERS[config.encoder](
                config.input_shape, 2 * config.latent_dim, config.hidden, config.layers)
            self.angle_head = PolarAngleHead(config.input_shape[0], min(config.input_shape[1:]) // 2)
        else:
            self.encoder = ENCODERS[config.encoder](
                config.input_shape, 2 * len(self.names), config.hidden, config.layers
            )
        self.decoder = build_decoder(
            config.decoder,
            config.latent_dim + config.condition_dim,
            config.input_shape,
            config.hidden,
            config.layers,
            config.decoder_base,
        )
        sigma = torch.full((config.input_shape[0],) + (1,) * config.spatial_dims,
                           float(config.sigma)).log()
        if config.learn_sigma:
            self.log_sigma = nn.Parameter(sigma)
        else:
            self.register_buffer("log_sigma", sigma)
        self.penalties: dict[str, tuple[float, Penalty]] = {}
        # The encoder works in units of each latent's prior scale, so an untrained encoder starts
        # near the prior instead of far outside a narrow shift prior (which costs many epochs).
        self.register_buffer("prior_scale", torch.tensor(
            [self._prior_of(name)[1] for name in self.names], dtype=torch.float32), persistent=False)

    # -- pieces ---------------------------------------------------------------------------
    def encode(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior means and log-variances, each (n, n_latents) in ``self.names`` order.

        condition (n, d): for encoders built with a condition input (q(z | x, y)).
        """
        scale: Tensor = self.prior_scale  # type: ignore[assignment]
        if self.equivariant:
            return self._equivariant_encode(x, scale)
        raw = self.encoder(x) if condition is None else self.encoder(x, condition)
        raw_mu, raw_logvar = raw.chunk(2, dim=-1)
        return raw_mu * scale, raw_logvar.clamp(-12.0, 8.0) + 2 * torch.log(scale)

    def _equivariant_encode(self, x: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        k = self.n_pose
        raw_mu, raw_logvar = self.encoder(x).chunk(2, dim=-1)
        mu_p = raw_mu * scale[:k]
        logvar_p = raw_logvar.clamp(-12.0, 8.0) + 2 * torch.log(scale[:k])
        c = self.config
        centre = (mu_p[:, 1:1 + c.spatial_dims].detach() if c.translation
                  else torch.zeros(len(x), c.spatial_dims, dtype=x.dtype, device=x.device))
        angle = self.angle_head(x, centre)
        mu_p = torch.cat([angle[:, None].to(mu_p.dtype), mu_p[:, 1:]], 1)
        matrix = self.pose_matrix(mu_p)
        assert matrix is not None
        canonical = warp(x, invert_affine(matrix))
        raw_mu_c, raw_logvar_c = self.content_encoder(canonical).chunk(2, dim=-1)
        return (torch.cat([mu_p, raw_mu_c * scale[k:]], 1),
                torch.cat([logvar_p, raw_logvar_c.clamp(-12.0, 8.0) + 2 * torch.log(scale[k:])], 1))

    def pose_matrix(self, latents: Tensor) -> Tensor | None:
        """Inverse pose matrices (n, D, D + 1) from the pose part of ``latents``, or None."""
        if self.n_pose == 0:
            return None
        c = self.config
        i = 0
        angle = shift = log_scale = None
        if c.rotation:
            angle, i = latents[:, 0], 1
        if c.translation:
            shift, i = latents[:, i : i + c.spatial_dims], i + c.spatial_dims
        if c.scale:
            log_scale = latents[:, i]
        return inverse_pose_matrix(latents.shape[0], c.spatial_dims, angle, shift, log_scale, latents)

    def decode(self, latents: Tensor, condition: Tensor | None = None) -> Tensor:
        """Raw decoder output (n, c, *spatial) for full latent vectors (n, n_latents)."""
        content = latents[:, self.n_pose :]
        if self.config.condition_dim:
            if condition is None:
                raise ValueError("this model is conditional: pass condition (n, condition_dim)")
            content = torch.cat([content, condition.to(content.dtype)], dim=1)
        return self.decoder(content, self.pose_matrix(latents))

    def mean_output(self, raw: Tensor) -> Tensor:
        """The likelihood's mean: the output itself (Gaussian) or its sigmoid (Bernoulli)."""
        return torch.sigmoid(raw) if self.config.likelihood == "bernoulli" else raw

    def _prior_of(self, name: str) -> tuple[str, float]:
        """The KL group and prior standard deviation of the latent ``name``."""
        c = self.config
        if name == "angle":
            return "rotation", c.angle_prior
        if name.startswith("shift"):
            return "translation", c.shift_prior
        if name == "log_scale":
            return "scale", c.scale_prior
        return "content", 1.0

    def kl_terms(self, mu: Tensor, logvar: Tensor) -> dict[str, Tensor]:
        """KL per latent group, each (n,)."""
        groups: dict[str, tuple[list[int], float]] = {}
        for i, name in enumerate(self.names):
            key, scale = self._prior_of(name)
            groups.setdefault(key, ([], scale))[0].append(i)
        out = {key: normal_kl(mu[:, idx], logvar[:, idx], scale) for key, (idx, scale) in groups.items()}
        if self.config.rotation and self.config.angle_prior_uniform:
            i = self.names.index("angle")
            out["rotation"] = (math.log(2 * math.pi) - 0.5 * (math.log(2 * math.pi * math.e) + logvar[:, i])).clamp_min(0)
        return out

    def swap_term(self, x: Tensor, z: Tensor, condition: Tensor | None) -> Tensor:
        c = self.config
        matrix = random_pose_matrix(
            len(x), c.spatial_dims, c.augment_angle if c.rotation else 0.0,
            c.augment_shift if c.translation else 0.0, c.augment_scale if c.scale else 0.0, x)
        moved = warp(x, matrix)
        mu_m, logvar_m = self.encode(moved)
        z_m = mu_m + torch.randn_like(mu_m) * torch.exp(0.5 * logvar_m)
        k = self.n_pose
        if c.consistency_content_moved:
            raw = self.decode(torch.cat([z[:, :k], z_m[:, k:]], 1), condition)
            return reconstruction_nll(x, raw, c.likelihood, self.log_sigma).mean()
        raw = self.decode(torch.cat([z_m[:, :k], z[:, k:]], 1), condition)
        return reconstruction_nll(moved, raw, c.likelihood, self.log_sigma).mean()

    def pose_consistency_term(self, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
        """Mean over samples of KL(T q(.|x) || q(.|T x)), T a random pose change per sample within
        the augment ranges of the pose latents this model has."""
        c = self.config
        n, d = len(x), c.spatial_dims

        def uniform(*shape: int) -> Tensor:
            return torch.rand(*shape, dtype=x.dtype, device=x.device) * 2 - 1

        phi = uniform(n) * c.augment_angle if c.rotation else None
        t = uniform(n, d) * c.augment_shift if c.translation else None
        ls = uniform(n) * c.augment_scale if c.scale else None
        matrix = inverse_pose_matrix(n, d, phi, t, ls, x)
        mu_m, logvar_m = self.encode(warp(x, matrix))
        k = self.n_pose if not c.consistency_pose else 0
        mu_c, logvar_c = mu[:, k:], logvar[:, k:]
        if not c.consistency_symmetric:
            mu_c, logvar_c = mu_c.detach(), logvar_c.detach()
        diff2 = (mu_c - mu_m[:, k:]) ** 2
        if c.consistency_pose:
            mu_c = mu_c.clone()
            i = 0
            target = mu_c
            parts = []
            if c.rotation:
                assert phi is not None
                delta = mu_m[:, 0] - mu_c[:, 0] - phi
                parts.append((2 * (1 - torch.cos(delta)))[:, None])
                i = 1
            if c.translation:
                assert t is not None
                s_ = mu_c[:, i:i + d]
                if c.rotation:
                    assert phi is not None
                    cs, sn = torch.cos(phi), torch.sin(phi)
                    s_ = torch.stack([cs * s_[:, 0] + sn * s_[:, 1], -sn * s_[:, 0] + cs * s_[:, 1]], 1)
                if c.scale:
                    s_ = s_ * torch.exp(ls)[:, None]  # type: ignore[arg-type]
                parts.append((mu_m[:, i:i + d] - s_ - t) ** 2)
                i += d
            if c.scale:
                parts.append(((mu_m[:, i] - mu_c[:, i] - ls) ** 2)[:, None])  # type: ignore[operator]
                i += 1
            parts.append(diff2[:, i:])
            diff2 = torch.cat(parts, 1)
            del target
        kl = 0.5 * (logvar_m[:, k:] - logvar_c + (logvar_c.exp() + diff2) / logvar_m[:, k:].exp() - 1)
        return kl.sum(1).mean()

    # -- the objective ----------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Tensor], knobs: Mapping[str, float] | None = None) -> LossRecord:
        """Loss on one batch. knobs: schedule values the training plan evaluated this step:
        ``beta`` (KL weight), ``capacity`` and ``gamma`` (|KL - C| form)."""
        knobs = knobs or {}
        x = batch["x"]
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        raw = self.decode(z, batch.get("condition"))
        nll = reconstruction_nll(x, raw, self.config.likelihood, self.log_sigma)
        kl = self.kl_terms(mu, logvar)
        kl_sum = torch.stack(list(kl.values())).sum(0)
        if "capacity" in knobs:
            regulariser = knobs.get("gamma", 1.0) * (kl_sum - knobs["capacity"]).abs()
        else:
            regulariser = knobs.get("beta", self.config.beta) * kl_sum
        total = (nll + regulariser).mean()
        extras: dict[str, Tensor] = {}
        weight = knobs.get("pose_consistency", self.config.pose_consistency)
        if weight and self.n_pose:
            if self.config.consistency_swap:
                extras["pose_consistency"] = weight * self.swap_term(x, z, batch.get("condition"))
            else:
                extras["pose_consistency"] = weight * self.pose_consistency_term(x, mu, logvar)
            total = total + extras["pose_consistency"]
        if self.penalties:
            inputs = PenaltyInput(
                x=x,
                reconstruction=self.mean_output(raw),
                latents={n: z[:, i] for i, n in enumerate(self.names)},
                means={n: mu[:, i] for i, n in enumerate(self.names)},
            )
            for name, (weight, penalty) in self.penalties.items():
                extras[name] = weight * penalty(inputs)
                total = total + extras[name]
        return LossRecord(
            total=total,
            reconstruction=nll.mean(),
            kl={k: v.mean() for k, v in kl.items()},
            extras=extras,
        )
