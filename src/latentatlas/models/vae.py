"""The VAE family's network: encoder, pose-aware decoder, and the loss.

Plain VAE, shift-VAE and rVAE are the same module with different pose latents switched on
(see VAEConfig). The module is pure torch: no training loop, no files, no plotting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from latentatlas._latent_names import ANGLE, LOG_SCALE, SHIFT_NAMES
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
from latentatlas.nn.pose import inverse_pose_matrix, invert_affine, warp


class VAEModule(nn.Module):
    """q(latents | x) by the encoder; p(x | content, pose) by the decoder.

    Batches are dicts: ``x`` (n, c, *spatial) and, for conditional models, ``condition``
    (n, condition_dim).
    """

    #: The knobs ``forward`` reads: the schedules the training plan accepts for this module.
    schedule_names: ClassVar[frozenset[str]] = frozenset({"beta", "capacity", "gamma"})

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.names = config.latent_names
        self.n_pose = len(self.names) - config.latent_dim
        encoder = ENCODERS[config.encoder]
        self.angle_head: PolarAngleHead | None = None
        self.content_encoder: nn.Module | None = None
        # Where the shift latent sits on the canonical object (see ``pose_matrix``), or None.
        self.canonical_origin: nn.Parameter | None = None
        if config.rotation and config.equivariant_angle:
            # The encoder gives the other pose latents' means and every pose log-variance; the
            # angle's mean comes from the head, the content from a second encoder (``encode``).
            self.encoder = encoder(config.input_shape, 2 * self.n_pose - 1, config.hidden,
                                   config.layers)
            self.angle_head = PolarAngleHead(config.input_shape[0],
                                             min(config.input_shape[1:]) // 2)
            self.content_encoder = encoder(config.input_shape, 2 * config.latent_dim,
                                           config.hidden, config.layers)
            if config.translation:
                self.canonical_origin = nn.Parameter(torch.zeros(config.spatial_dims))
                self._register_load_state_dict_pre_hook(_zero_origin_if_missing,
                                                        with_module=True)
        else:
            self.encoder = encoder(config.input_shape, 2 * len(self.names), config.hidden,
                                   config.layers)
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
        if self.angle_head is not None:
            return self._encode_equivariant(x, condition)
        raw = self.encoder(x) if condition is None else self.encoder(x, condition)
        raw_mu, raw_logvar = raw.chunk(2, dim=-1)
        return self._from_prior_units(raw_mu, raw_logvar, self.prior_scale)  # type: ignore[arg-type]

    @staticmethod
    def _from_prior_units(raw_mu: Tensor, raw_logvar: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        """Means and log-variances from encoder outputs in units of each latent's prior scale."""
        return raw_mu * scale, raw_logvar.clamp(-12.0, 8.0) + 2 * torch.log(scale)

    def _encode_equivariant(self, x: Tensor, condition: Tensor | None) -> tuple[Tensor, Tensor]:
        """``encode`` with ``equivariant_angle``: the angle's mean from the polar head about the
        inferred centre, the content from x turned back to the canonical frame by the inferred
        pose. Rotating x then moves the angle and leaves the content's input (nearly) unchanged,
        so the content cannot carry the rotation."""
        assert self.angle_head is not None and self.content_encoder is not None
        c, k = self.config, self.n_pose
        scale: Tensor = self.prior_scale  # type: ignore[assignment]
        raw = self.encoder(x)  # (n, 2k - 1): means of the pose latents after the angle, log-vars
        others = raw[:, : k - 1] * scale[1:k]
        logvar_pose = raw[:, k - 1 :].clamp(-12.0, 8.0) + 2 * torch.log(scale[:k])
        # The encoder's shift output is where the canonical frame's origin appears; the polar
        # grid turns about it (detached: it only places the grid, the shift is learnt from the
        # reconstruction). The shift latent is the point ``canonical_origin`` of the object.
        centre = (others[:, : c.spatial_dims].detach() if c.translation
                  else torch.zeros(len(x), c.spatial_dims, dtype=x.dtype, device=x.device))
        angle = self.angle_head(x, centre)[:, None].to(others.dtype)
        if self.canonical_origin is not None:
            # Detached angle: the shift prior must not turn the angle to shorten the shift.
            offset = self._origin_offset(angle.detach(), others)
            others = torch.cat([others[:, : c.spatial_dims] + offset,
                                others[:, c.spatial_dims :]], 1)
        mu_pose = torch.cat([angle, others], 1)
        matrix = self.pose_matrix(mu_pose)
        assert matrix is not None
        canonical = warp(x, invert_affine(matrix))
        raw_c = (self.content_encoder(canonical) if condition is None
                 else self.content_encoder(canonical, condition))
        raw_mu_c, raw_logvar_c = raw_c.chunk(2, dim=-1)
        mu_c, logvar_c = self._from_prior_units(raw_mu_c, raw_logvar_c, scale[k:])
        return torch.cat([mu_pose, mu_c], 1), torch.cat([logvar_pose, logvar_c], 1)

    def _origin_offset(self, angle: Tensor, others: Tensor) -> Tensor:
        """s R(angle) canonical_origin (n, D): how far the shift latent lies from the point the
        encoder tracks, for angles (n, 1) and the pose means after the angle (n, k - 1)."""
        assert self.canonical_origin is not None
        c = self.config
        log_scale = others[:, c.spatial_dims] if c.scale else None
        linear = inverse_pose_matrix(len(angle), c.spatial_dims, angle[:, 0], None, log_scale,
                                     others)[:, :, :-1]  # (s R)^-1
        origin = self.canonical_origin.to(others.dtype).expand(len(angle), -1)
        return torch.linalg.solve(linear, origin)

    def pose_matrix(self, latents: Tensor) -> Tensor | None:
        """Inverse pose matrices (n, D, D + 1) from the pose part of ``latents``, or None.

        With ``canonical_origin`` o (equivariant rVAE with translation) an observed point q maps
        to the canonical p = (s R)^-1 (q - t) + o: the shift t is where the canonical point o
        appears. Which point of an object the shift follows is free for the reconstruction
        (moving it changes the decoder's frame and every shift together); only the shift prior
        picks one, the point whose position does not move with the angle. As one learnt vector,
        that choice is reached in a few steps instead of by encoder and decoder drifting
        together over many epochs (issue 21: on the 16x16 L set shift r stayed near 0.8 after
        20 epochs with the equivariant head).
        """
        if self.n_pose == 0:
            return None
        angle, shift, log_scale = self.config.pose.split(latents)
        matrix = inverse_pose_matrix(latents.shape[0], self.config.spatial_dims, angle, shift,
                                     log_scale, latents)
        if self.canonical_origin is None:
            return matrix
        origin = self.canonical_origin.to(matrix.dtype)[None, :, None]
        return torch.cat([matrix[:, :, :-1], matrix[:, :, -1:] + origin], -1)

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
        if name == ANGLE:
            return "rotation", c.angle_prior
        if name in SHIFT_NAMES:
            return "translation", c.shift_prior
        if name == LOG_SCALE:
            return "scale", c.scale_prior
        return "content", 1.0

    def kl_terms(self, mu: Tensor, logvar: Tensor) -> dict[str, Tensor]:
        """KL per latent group, each (n,)."""
        groups: dict[str, tuple[list[int], float]] = {}
        for i, name in enumerate(self.names):
            key, scale = self._prior_of(name)
            groups.setdefault(key, ([], scale))[0].append(i)
        return {key: normal_kl(mu[:, idx], logvar[:, idx], scale) for key, (idx, scale) in groups.items()}

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


def _zero_origin_if_missing(module: nn.Module, state_dict: dict[str, Any], prefix: str,
                            *args: Any) -> None:
    """Models saved before ``canonical_origin`` existed load with the origin at zero, which
    is exactly the model they were (the shift latent then names the encoder's point)."""
    key = prefix + "canonical_origin"
    origin = getattr(module, "canonical_origin", None)
    if key not in state_dict and origin is not None:
        state_dict[key] = torch.zeros_like(origin)
