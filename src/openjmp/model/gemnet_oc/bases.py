"""Basis functions of all four graphs and their down-projections shared by every block.

Module and attribute names follow the authors' ``Bases`` (``src/jmp/models/gemnet/bases.py``),
including the one ``radial_basis_spherical`` object shared by ``sbf_basis_qint``,
``cbf_basis_aeint`` and ``cbf_basis_tint`` (so checkpoints hold its buffers three times).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from openjmp.model.gemnet_oc import checkpointing, fused
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.gemnet_oc.efficient import BasisEmbedding
from openjmp.model.gemnet_oc.graph_inputs import GemNetGraph, GraphGeometry, Quadruplets
from openjmp.model.gemnet_oc.layers import Dense
from openjmp.model.gemnet_oc.radial import RadialBasis
from openjmp.model.gemnet_oc.segment import PaddedBasis, SegmentPlan
from openjmp.model.gemnet_oc.spherical import CircularBasisLayer, SphericalBasisLayer


def inner_product_clamped(x: Tensor, y: Tensor) -> Tensor:
    """Row-wise dot product of unit vectors, clamped to [-1, 1]: (K, 3), (K, 3) -> (K,)."""
    return torch.sum(x * y, dim=-1).clamp(min=-1, max=1)


def get_angle(r_ac: Tensor, r_ab: Tensor) -> Tensor:
    """Angle between vectors (K, 3), (K, 3) -> (K,) radians, via atan2(|a x b|, a . b);
    |a x b| is clamped at 1e-9 (authors' guard against NaN gradients)."""
    x = torch.sum(r_ac * r_ab, dim=-1)
    y = torch.cross(r_ac, r_ab, dim=-1).norm(dim=-1).clamp(min=1e-9)
    return torch.atan2(y, x)


class EdgeEmbedding(nn.Module):
    """m_st = Dense([h_s, h_t, m]) (weight (out, 2A + F), activation).

    Evaluated without the (E, 2A + F) concatenation: the weight is split into its three column
    blocks and the two atom blocks are applied to the N atoms before gathering to the edges.
    """

    def __init__(
        self, atom_features: int, edge_features: int, out_features: int, activation: str | None
    ) -> None:
        super().__init__()
        self.atom_features = atom_features
        self.dense = Dense(2 * atom_features + edge_features, out_features, activation=activation)

    def forward(self, h: Tensor, m: Tensor, edge_index: Tensor) -> Tensor:
        """h (N, A), m (E, F), edge_index (2, E) -> (E, out)."""
        return self.dense.activation(self.pre_activation(h, m, edge_index))

    def pre_activation(self, h: Tensor, m: Tensor, edge_index: Tensor) -> Tensor:
        """`forward` without the activation (for a fused consumer that applies it)."""
        a = self.atom_features
        w = self.dense.linear.weight
        hs = h @ w[:, :a].T
        ht = h @ w[:, a : 2 * a].T
        z = hs.index_select(0, edge_index[0]) + ht.index_select(0, edge_index[1])
        if fused.active():
            z = fused.dense(m, w[:, 2 * a :], None).add_(z)
        else:
            z = torch.addmm(z, m, w[:, 2 * a :].T)
        return z


@dataclass(frozen=True, slots=True)
class TripletBases:
    """rad (E_src, emb_rbf) for the input edges; rad_w (n_out, emb_cbf, S) radial part of the
    angular basis per output edge; cir the circular basis of the triplets (T, S) laid out for
    ``plan`` (triplets -> output edges, x rows = input edges); rad_w_ordered: with fused
    kernels, rad_w's rows in the plan's order (`SegmentPlan.aggregate_bilinear`) and rad_w
    empty, else None (except for e2a, which aggregates a second time and keeps rad_w)."""

    rad: Tensor
    rad_w: Tensor
    cir: PaddedBasis
    plan: SegmentPlan
    rad_w_ordered: Tensor | None = None


@dataclass(frozen=True, slots=True)
class QuadBases:
    """rad (E, emb_rbf); cir (T_in, emb_cbf) embedded circular basis of the input triplets;
    rad_w (E, emb_sbf, S * S) (empty with fused kernels: rad_w_ordered); the two factors of the ``legendre_outer`` basis (index
    l_φ * S + l_θ): sph_theta (Q, S) laid out for ``plan_trip`` (quadruplets -> output
    triplets, x rows = input triplets) and sph_phi (T_out, S) for ``plan_edge`` (output
    triplets -> main edges)."""

    rad: Tensor
    cir: Tensor
    rad_w: Tensor
    sph_phi: PaddedBasis
    sph_theta: PaddedBasis
    plan_trip: SegmentPlan
    plan_edge: SegmentPlan
    rad_w_ordered: Tensor | None = None


@dataclass(frozen=True, slots=True)
class BasesOutput:
    """m (E, emb_edge) initial edge embedding; rbf_h, rbf_out (E, emb_rbf) for the atom-update
    and output blocks; the four interaction bases; a2a_rad (E_a2a, emb_rbf) laid out for
    ``a2a_plan`` (a2a edges -> target atoms, x rows = source atoms)."""

    m: Tensor
    rbf_h: Tensor
    rbf_out: Tensor
    e2e: TripletBases
    qint: QuadBases
    a2e: TripletBases
    e2a: TripletBases
    a2a_rad: PaddedBasis
    a2a_plan: SegmentPlan


def quad_angles(
    main: GraphGeometry, qint: GraphGeometry, quad: Quadruplets
) -> tuple[Tensor, Tensor, Tensor]:
    """cos φ_cab (T_out,), cos φ_abd (T_in,) and the dihedral half angle θ_cabd (Q,) radians."""
    v_ba = qint.vector.index_select(0, quad.triplet_in_out)
    v_db = main.vector.index_select(0, quad.triplet_in_in)
    cos_abd = inner_product_clamped(v_ba, v_db)
    v_db_cross = torch.cross(v_db, v_ba, dim=-1)

    v_ca = main.vector.index_select(0, quad.triplet_out_out)
    v_ba_out = qint.vector.index_select(0, quad.triplet_out_in)
    cos_cab = inner_product_clamped(v_ca, v_ba_out)
    v_ca_cross = torch.cross(v_ca, v_ba_out, dim=-1)

    theta = get_angle(
        v_ca_cross.index_select(0, quad.trip_out_to_quad),
        v_db_cross.index_select(0, quad.trip_in_to_quad),
    )
    return cos_cab, cos_abd, theta


class Bases(nn.Module):
    """Raw bases of the four graphs and their shared projections (computed once per forward)."""

    def __init__(self, config: GemNetOCConfig) -> None:
        super().__init__()
        c = config
        self.num_blocks = c.num_blocks
        r, s, p = c.num_radial, c.num_spherical, int(c.envelope.get("exponent", 5))
        cutoff = float(c.absolute_rbf_cutoff)  # type: ignore[arg-type]

        def radial() -> RadialBasis:
            return RadialBasis(r, cutoff, p)

        self.radial_basis = radial()
        radial_basis_spherical = radial()
        self.cbf_basis_qint = CircularBasisLayer(s, radial())
        self.sbf_basis_qint = SphericalBasisLayer(s, radial_basis_spherical)
        self.radial_basis_aeaint = radial()
        self.cbf_basis_aeint = CircularBasisLayer(s, radial_basis_spherical)
        self.cbf_basis_eaint = CircularBasisLayer(s, radial())
        self.radial_basis_aint = radial()
        self.cbf_basis_tint = CircularBasisLayer(s, radial_basis_spherical)

        self.mlp_rbf_qint = Dense(r, c.emb_size_rbf)
        self.mlp_cbf_qint = BasisEmbedding(r, c.emb_size_cbf, s)
        self.mlp_sbf_qint = BasisEmbedding(r, c.emb_size_sbf, s * s)
        self.mlp_rbf_aeint = Dense(r, c.emb_size_rbf)
        self.mlp_cbf_aeint = BasisEmbedding(r, c.emb_size_cbf, s)
        self.mlp_rbf_eaint = Dense(r, c.emb_size_rbf)
        self.mlp_cbf_eaint = BasisEmbedding(r, c.emb_size_cbf, s)
        self.mlp_rbf_aint = BasisEmbedding(r, c.emb_size_rbf)
        self.mlp_rbf_tint = Dense(r, c.emb_size_rbf)
        self.mlp_cbf_tint = BasisEmbedding(r, c.emb_size_cbf, s)
        self.mlp_rbf_h = Dense(r, c.emb_size_rbf)
        self.mlp_rbf_out = Dense(r, c.emb_size_rbf)

        self.edge_emb = EdgeEmbedding(c.emb_size_atom, r, c.emb_size_edge, c.activation)

    def shared_parameters(self) -> list[tuple[str, nn.Parameter, int]]:
        """(name, parameter, factor): parameters used by every block, whose gradients the
        authors divide by ``factor`` after backward (num_blocks, or num_blocks + 1 for
        ``mlp_rbf_out``). Names are relative to this module."""
        nb = self.num_blocks
        names = [
            ("mlp_rbf_tint.linear.weight", nb),
            ("mlp_cbf_tint.weight", nb),
            ("mlp_rbf_h.linear.weight", nb),
            ("mlp_rbf_out.linear.weight", nb + 1),
            ("mlp_rbf_qint.linear.weight", nb),
            ("mlp_cbf_qint.weight", nb),
            ("mlp_sbf_qint.weight", nb),
            ("mlp_rbf_aeint.linear.weight", nb),
            ("mlp_cbf_aeint.weight", nb),
            ("mlp_rbf_eaint.linear.weight", nb),
            ("mlp_cbf_eaint.weight", nb),
            ("mlp_rbf_aint.weight", nb),
        ]
        params = dict(self.named_parameters())
        return [(n, params[n], f) for n, f in names]

    def _a2a_basis(self, distance: Tensor, plan: SegmentPlan) -> tuple[Tensor, ...]:
        return plan.pad_basis(self.mlp_rbf_aint(self.radial_basis_aint(distance))).chunks

    def forward(
        self, h: Tensor, g: GemNetGraph, checkpoint_mode: checkpointing.Mode = "off"
    ) -> BasesOutput:
        """h (N, emb_atom) atom embeddings -> `BasesOutput`. ``checkpoint_mode`` other than
        "off" recomputes the (large) a2a radial basis in backward instead of keeping it."""
        main, aee, quad = g.main, g.a2ee2a, g.quad
        rad_main = self.radial_basis(main.distance)

        # e2e triplets b->a<-c: angle between c->a (out) and b->a (in)
        cos_e2e = inner_product_clamped(
            main.vector.index_select(0, g.trip_e2e.out), main.vector.index_select(0, g.trip_e2e.in_)
        )
        rad_cir_e2e, cir_e2e = self.cbf_basis_tint(main.distance, cos_e2e)
        # the one radial_basis_spherical of tint, qint's sbf and aeint: evaluated once
        sph = self.cbf_basis_tint.radial_basis
        shared = rad_cir_e2e if self.sbf_basis_qint.radial_basis is sph else None

        # quadruplets d->b->a<-c
        cos_cab, cos_abd, theta = quad_angles(main, g.qint, quad)
        rad_cir_qint, cir_qint = self.cbf_basis_qint(g.qint.distance, cos_abd)
        rad_sph_qint, sph_phi, sph_theta = self.sbf_basis_qint(
            main.distance, cos_cab, theta, shared
        )

        # atom -> edge: a2ee2a edge (in) into main edge (out)
        rad_aee = self.radial_basis_aeaint(aee.distance)
        cos_a2e = inner_product_clamped(
            main.vector.index_select(0, g.trip_a2e.out), aee.vector.index_select(0, g.trip_a2e.in_)
        )
        shared = rad_cir_e2e if self.cbf_basis_aeint.radial_basis is sph else None
        rad_cir_a2e, cir_a2e = self.cbf_basis_aeint(main.distance, cos_a2e, shared)

        # edge -> atom: main edge (in) into a2ee2a edge (out)
        cos_e2a = inner_product_clamped(
            aee.vector.index_select(0, g.trip_e2a.out), main.vector.index_select(0, g.trip_e2a.in_)
        )
        rad_cir_e2a, cir_e2a = self.cbf_basis_eaint(aee.distance, cos_e2a)

        # shared down-projections, and the bases laid out for their aggregations
        n, e, e_aee = g.num_atoms, main.num_edges, aee.num_edges
        t_out = quad.triplet_out_out.shape[0]
        rad_w_cbf_qint = self.mlp_cbf_qint(rad_cir_qint)  # (E_qint, emb_cbf, S)
        cir_qint_emb = torch.bmm(
            rad_w_cbf_qint.index_select(0, quad.triplet_in_out), cir_qint[:, :, None]
        ).squeeze(-1)  # (T_in, emb_cbf)
        plan_trip = SegmentPlan.build(quad.trip_out_to_quad, t_out, quad.trip_in_to_quad)
        plan_edge = SegmentPlan.build(quad.triplet_out_out, e, None)
        fast = fused.active()  # then only the rows in plan order (`aggregate_bilinear`)

        def ordered(emb: BasisEmbedding, rad: Tensor, plan: SegmentPlan) -> Tensor | None:
            return emb(rad.index_select(0, plan.order)) if fast else None

        qint = QuadBases(
            rad=self.mlp_rbf_qint(rad_main),
            cir=cir_qint_emb,
            rad_w=rad_sph_qint.new_empty(0) if fast else self.mlp_sbf_qint(rad_sph_qint),
            rad_w_ordered=ordered(self.mlp_sbf_qint, rad_sph_qint, plan_edge),
            sph_phi=plan_edge.pad_basis(sph_phi),
            sph_theta=plan_trip.pad_basis(sph_theta),
            plan_trip=plan_trip.without_pairs(),
            plan_edge=plan_edge.without_pairs(),
        )
        plan_a2e = SegmentPlan.build(g.trip_a2e.out, e, g.trip_a2e.in_)
        a2e = TripletBases(
            rad=self.mlp_rbf_aeint(rad_aee),
            rad_w=rad_cir_a2e.new_empty(0) if fast else self.mlp_cbf_aeint(rad_cir_a2e),
            rad_w_ordered=ordered(self.mlp_cbf_aeint, rad_cir_a2e, plan_a2e),
            cir=plan_a2e.pad_basis(cir_a2e),
            plan=plan_a2e.without_pairs(),
        )
        plan_e2a = SegmentPlan.build(g.trip_e2a.out, e_aee, g.trip_e2a.in_)
        e2a = TripletBases(
            rad=self.mlp_rbf_eaint(rad_main),
            rad_w=self.mlp_cbf_eaint(rad_cir_e2a),
            cir=plan_e2a.pad_basis(cir_e2a),
            plan=plan_e2a.without_pairs(),
        )
        plan_e2e = SegmentPlan.build(g.trip_e2e.out, e, g.trip_e2e.in_)
        e2e = TripletBases(
            rad=self.mlp_rbf_tint(rad_main),
            rad_w=rad_cir_e2e.new_empty(0) if fast else self.mlp_cbf_tint(rad_cir_e2e),
            rad_w_ordered=ordered(self.mlp_cbf_tint, rad_cir_e2e, plan_e2e),
            cir=plan_e2e.pad_basis(cir_e2e),
            plan=plan_e2e.without_pairs(),
        )
        a2a_index = g.a2a.edge_index
        a2a_plan = SegmentPlan.build(a2a_index[1], n, a2a_index[0])
        return BasesOutput(
            m=self.edge_emb(h, rad_main, main.edge_index),
            rbf_h=self.mlp_rbf_h(rad_main),
            rbf_out=self.mlp_rbf_out(rad_main),
            e2e=e2e,
            qint=qint,
            a2e=a2e,
            e2a=e2a,
            a2a_rad=PaddedBasis(
                checkpointing.run(
                    "full" if checkpoint_mode != "off" else "off",
                    self._a2a_basis,
                    g.a2a.distance,
                    a2a_plan,
                ),
                self.mlp_rbf_aint.weight.shape[0],
            ),
            a2a_plan=a2a_plan.without_pairs(),
        )
