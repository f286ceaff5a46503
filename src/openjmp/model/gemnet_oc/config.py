"""`GemNetOCConfig`: the GemNet-OC hyper-parameters under the authors' names, and the JMP presets.

Field names are those of the authors' ``BackboneConfig`` (``src/jmp/models/gemnet/config.py``)
so that the ``hyper_parameters["backbone"]`` dict of a published checkpoint maps onto it one to
one. Options the JMP code path never exercises (other radial/angular bases, learnable RBFs,
per-layer bases, basis scaling, dropout, partial interaction sets, a dynamic cutoff) are
rejected with a `ConfigError` instead of being silently ignored. Keys that some checkpoints
carry but no code reads (``ln``, ``replace_scale_factors_with_ln``, ``old_gaussian_implementation``)
are accepted only with their inert value (False).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openjmp.errors import ConfigError

# Keys some checkpoints carry that no code path reads, with the only value that keeps them inert.
INERT_KEYS: dict[str, Any] = {
    "ln": False,
    "replace_scale_factors_with_ln": False,
    "old_gaussian_implementation": False,
}

# Bookkeeping fields of the authors' config that have no effect on the network built here
# (the authors' backbone also ignores them on the JMP code path). Kept so a config round-trips.
_BOOKKEEPING = (
    "num_targets",
    "use_pbc",
    "otf_graph",
    "extensive",
    "forces_coupled",
    "scale_backprop_forces",
    "scale_file",
)


def _default_rbf() -> dict[str, Any]:
    return {"name": "gaussian"}


def _default_envelope() -> dict[str, Any]:
    return {"name": "polynomial", "exponent": 5}


@dataclass(frozen=True)
class GemNetOCConfig:
    """GemNet-OC backbone hyper-parameters (authors' names; sizes are feature counts).

    The network always uses all four interaction types (triplet, quadruplet, atom-to-edge,
    edge-to-atom, atom-to-atom), Gaussian radial bases on d / ``absolute_rbf_cutoff`` (Å) with a
    polynomial envelope, Legendre circular bases and the ``legendre_outer`` spherical basis.
    """

    num_spherical: int = 7
    num_radial: int = 128
    num_blocks: int = 4
    emb_size_atom: int = 256
    emb_size_edge: int = 512
    emb_size_trip_in: int = 64
    emb_size_trip_out: int = 64
    emb_size_quad_in: int = 32
    emb_size_quad_out: int = 32
    emb_size_aint_in: int = 64
    emb_size_aint_out: int = 64
    emb_size_rbf: int = 16
    emb_size_cbf: int = 16
    emb_size_sbf: int = 32
    num_before_skip: int = 2
    num_after_skip: int = 2
    num_concat: int = 1
    num_atom: int = 3
    num_output_afteratom: int = 3
    num_atom_emb_layers: int = 2
    num_global_out_layers: int = 2
    regress_energy: bool = True
    regress_forces: bool = True
    direct_forces: bool = True
    activation: str = "scaled_silu"
    rbf: Mapping[str, Any] = field(default_factory=_default_rbf)
    rbf_spherical: Mapping[str, Any] | None = None
    envelope: Mapping[str, Any] = field(default_factory=_default_envelope)
    cbf: Mapping[str, Any] = field(default_factory=lambda: {"name": "spherical_harmonics"})
    sbf: Mapping[str, Any] = field(default_factory=lambda: {"name": "legendre_outer"})
    quad_interaction: bool = True
    atom_edge_interaction: bool = True
    edge_atom_interaction: bool = True
    atom_interaction: bool = True
    scale_basis: bool = False
    qint_tags: tuple[int, ...] = (1, 2)
    num_elements: int = 120
    absolute_rbf_cutoff: float | None = 12.0
    learnable_rbf: bool = False
    learnable_rbf_stds: bool = False
    unique_basis_per_layer: bool = False
    dropout: float | None = None
    edge_dropout: float | None = None
    # bookkeeping (no effect on the network; see module docstring)
    num_targets: int = 1
    use_pbc: bool = True
    otf_graph: bool = False
    extensive: bool = True
    forces_coupled: bool = False
    scale_backprop_forces: bool = False
    scale_file: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "qint_tags", tuple(int(t) for t in self.qint_tags))
        for name in ("rbf", "envelope", "cbf", "sbf"):
            object.__setattr__(self, name, dict(getattr(self, name)))
        if self.rbf_spherical is not None:
            object.__setattr__(self, "rbf_spherical", dict(self.rbf_spherical))
        self._check()

    # ------------------------------------------------------------------ checks
    def _check(self) -> None:
        def bad(field_name: str, why: str) -> ConfigError:
            return ConfigError(f"GemNetOCConfig.{field_name}={getattr(self, field_name)!r}: {why}")

        for name in (
            "num_spherical",
            "num_radial",
            "num_blocks",
            "emb_size_atom",
            "emb_size_edge",
            "emb_size_trip_in",
            "emb_size_trip_out",
            "emb_size_quad_in",
            "emb_size_quad_out",
            "emb_size_aint_in",
            "emb_size_aint_out",
            "emb_size_rbf",
            "emb_size_cbf",
            "emb_size_sbf",
            "num_elements",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "must be a positive integer")
        for name in (
            "num_before_skip",
            "num_after_skip",
            "num_concat",
            "num_atom",
            "num_output_afteratom",
            "num_atom_emb_layers",
            "num_global_out_layers",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise bad(name, "must be a non-negative integer")
        if self.activation.lower() not in ("scaled_silu", "scaled_swish", "silu", "swish"):
            raise bad("activation", "supported: scaled_silu (JMP), silu")
        for name in ("rbf", "rbf_spherical"):
            spec = getattr(self, name)
            if spec is None:
                continue
            if spec.get("name", "").lower() != "gaussian" or any(
                spec.get(k) for k in ("trainable", "trainable_stds")
            ):
                raise bad(
                    name, "only the fixed Gaussian radial basis {'name': 'gaussian'} is supported"
                )
            extra = set(spec) - {"name", "trainable", "trainable_stds"}
            if extra:
                raise bad(name, f"unknown keys {sorted(extra)}")
        env = self.envelope
        if env.get("name", "").lower() != "polynomial" or set(env) - {"name", "exponent"}:
            raise bad("envelope", "only {'name': 'polynomial', 'exponent': p} is supported")
        p = env.get("exponent", 5)
        if not isinstance(p, int) or p < 1:
            raise bad("envelope", "the polynomial exponent must be a positive integer")
        if self.cbf.get("name", "").lower() != "spherical_harmonics" or len(self.cbf) != 1:
            raise bad("cbf", "only {'name': 'spherical_harmonics'} (Legendre, m=0) is supported")
        if self.sbf.get("name", "").lower() != "legendre_outer" or len(self.sbf) != 1:
            raise bad("sbf", "only {'name': 'legendre_outer'} is supported")
        for name in (
            "quad_interaction",
            "atom_edge_interaction",
            "edge_atom_interaction",
            "atom_interaction",
        ):
            if getattr(self, name) is not True:
                raise bad(name, "GemNet-OC as used by JMP needs all four interactions (True)")
        for name in (
            "scale_basis",
            "learnable_rbf",
            "learnable_rbf_stds",
            "unique_basis_per_layer",
        ):
            if getattr(self, name) is not False:
                raise bad(name, "not used by JMP and not implemented (must be False)")
        if self.absolute_rbf_cutoff is None or not self.absolute_rbf_cutoff > 0:
            raise bad(
                "absolute_rbf_cutoff",
                "must be a positive cutoff in Å (JMP: 12.0); the per-graph dynamic cutoff is not implemented",
            )
        if self.dropout is not None:
            raise bad("dropout", "dropout is not used by JMP and not implemented (must be None)")
        if self.edge_dropout is not None and not 0.0 <= self.edge_dropout < 1.0:
            raise bad("edge_dropout", "must be None or in [0, 1)")
        if self.regress_forces and not self.direct_forces:
            raise bad(
                "regress_forces",
                "backbone forces are direct only; for gradient forces set regress_forces=False "
                "and use a gradient-force head",
            )
        if self.num_targets != 1:
            raise bad("num_targets", "the backbone has no output layer of its own; must be 1")

    # ----------------------------------------------------------------- presets
    @classmethod
    def jmp_s(cls, **overrides: Any) -> GemNetOCConfig:
        """JMP-S (the authors' ``BackboneConfig.base()``), with optional field overrides."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def jmp_l(cls, **overrides: Any) -> GemNetOCConfig:
        """JMP-L (the authors' ``BackboneConfig.large()``), with optional field overrides."""
        large = cls(
            num_blocks=6,
            emb_size_edge=1024,
            emb_size_trip_out=128,
            emb_size_quad_in=64,
            emb_size_rbf=32,
            emb_size_sbf=64,
            num_concat=4,
        )
        return dataclasses.replace(large, **overrides)

    # ------------------------------------------------------------- conversion
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "config") -> GemNetOCConfig:
        """Build from an authors'-style dict (e.g. a checkpoint's ``hyper_parameters["backbone"]``).

        Known inert keys are accepted only with their inert value; any other unknown key, or a
        value this implementation does not support, raises `ConfigError` naming ``source``.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(
                f"{source}: backbone config must be a mapping, got {type(d).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key in known:
                kwargs[key] = value
            elif key in INERT_KEYS:
                if value != INERT_KEYS[key]:
                    raise ConfigError(
                        f"{source}: backbone key {key!r}={value!r} is not supported "
                        f"(only the inert value {INERT_KEYS[key]!r} is accepted)"
                    )
            else:
                raise ConfigError(f"{source}: unknown backbone config key {key!r}={value!r}")
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except TypeError as exc:  # wrong value types reaching the dataclass
            raise ConfigError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict under the authors' key names (JSON-serialisable)."""
        out = dataclasses.asdict(self)
        out["qint_tags"] = list(self.qint_tags)
        return out

    def replace(self, **changes: Any) -> GemNetOCConfig:
        return dataclasses.replace(self, **changes)
