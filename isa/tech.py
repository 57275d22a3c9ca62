"""Technology scaling of energy and area between process nodes (Stillmaker & Baas 2017).

The fabric's energy and area tables are given at ``tech.node_nm``; a target with
``tech.scale_to_nm`` set reports them scaled to that node, and comparisons with other chips
scale to the compared chip's node with the same functions. A leaf module: pure arithmetic.
"""

from __future__ import annotations

import math

# A. Stillmaker and B. Baas, "Scaling equations for the accurate prediction of CMOS device
# performance from 180 nm to 7 nm," Integration, the VLSI Journal 58 (2017) 74-81,
# doi:10.1016/j.vlsi.2017.02.002. Energy per operation at node X and supply V is
# proportional to a2*V^2 + a1*V + a0 with the per-node coefficients of the paper's energy
# fits; E_Y = E_X * F_Y(V_Y) / F_X(V_X). Area scales by the paper's area factor table.
# Only the tabulated nodes are accepted: a factor "at 5 nm" or "at 28 nm" would silently be
# another node's (nothing below 7 nm is tabulated), so the caller names a tabulated node
# itself (a 4N / 5 nm class GPU is compared at 7 nm: favourable to the GPU).
#
# From 45 nm down the paper fits high-performance (HP) and low-power (LP) devices apart.
# A GPU is built on a high-performance process, so every row from 45 nm down is an HP fit:
# one consistent family (the LP fits at 45 and 32 nm, 1.103, -0.362, 0.2767 and 0.9559,
# -0.7823, 0.471, beside HP ones below would give 45->7 nm 0.0470 instead of 0.0555).
# Source of the coefficients: the UCLA NanoCAD transcription of the paper's tables,
# github.com/wromaszkan/nodeScale, nodeScale.py (commit a912c607668e), ``depCoeffDict``,
# energy columns 4-6 of rows '130', '90', '65' (one fit each), 'HP45', 'HP32', 'HP20',
# 'HP16', 'HP14', 'HP10', 'HP7'. Its 65 nm row matches the authors' corrigendum example
# (3.755 V^2 - 4.398 V + 1.975).
TABULATED_NODES = (130, 90, 65, 45, 32, 20, 16, 14, 10, 7)
_ENERGY_COEF = {
    130: (7.171, -6.709, 2.904), 90: (4.762, -4.781, 2.092), 65: (3.755, -4.398, 1.975),
    45: (1.018, -0.3107, 0.1539), 32: (0.8367, -0.4341, 0.1701), 20: (0.373, -0.1582, 0.04104),
    16: (0.2958, -0.1241, 0.03024), 14: (0.2363, -0.09675, 0.02239), 10: (0.2068, -0.09311, 0.02375),
    7: (0.1776, -0.09097, 0.02447),
}
# area factor relative to 45 nm (row "45" of the paper's area table; nodeScale.py ``areaDict``)
_AREA_FROM_45 = {130: 6.4, 90: 2.8, 65: 1.5, 45: 1.0, 32: 0.46, 20: 0.21, 16: 0.19, 14: 0.17,
                 10: 0.1, 7: 0.059}
# Nominal supply per node. 45 and 32 nm: the nominal Vdd the PTM high-performance model
# cards state (PTM HP 45 nm "nominal Vdd = 1.0V", PTM HP 32 nm "nominal Vdd = 0.9V"; the LP
# cards' 45 nm figure is 1.1 V), the models the paper's 45/32 nm HP fits simulate.
# 130-65 nm and 20-7 nm: common nominal supplies of those nodes, not checked against the
# paper's own table.
NOMINAL_VDD = {130: 1.3, 90: 1.2, 65: 1.1, 45: 1.0, 32: 0.9, 20: 0.9, 16: 0.85, 14: 0.8, 10: 0.75, 7: 0.7}
SCALING_CITATION = ("Stillmaker & Baas, Integration 58 (2017) 74-81: energy polynomial in Vdd per "
                    "node (high-performance fits from 45 nm down), nominal Vdd per node; tabulated "
                    "nodes 130-7 nm only")


def nearest_node(nm: float) -> int:
    """The tabulated node nearest ``nm`` (a tie goes to the larger node), for messages."""
    return min(TABULATED_NODES, key=lambda n: abs(n - nm))


def check_node(nm: float) -> int:
    """``nm`` as a tabulated node; a ValueError naming the nearest one and the table otherwise."""
    table = ", ".join(str(n) for n in TABULATED_NODES)
    if isinstance(nm, bool) or not isinstance(nm, (int, float)) or not math.isfinite(nm):
        raise ValueError(f"{nm!r} is not a process node in nm (tabulated: {table} nm)")
    if nm in TABULATED_NODES:
        return int(nm)
    if nm < min(TABULATED_NODES) or nm > max(TABULATED_NODES):
        why = (f"outside the 7..130 nm range of the Stillmaker & Baas tables; the nearest node is "
               f"{nearest_node(nm)} nm")
    else:
        why = f"not a node of the Stillmaker & Baas tables; the nearest one is {nearest_node(nm)} nm"
    raise ValueError(f"{nm:g} nm is {why} (tabulated: {table} nm)")


def energy_factor(from_nm: float, to_nm: float, from_vdd: float | None = None,
                  to_vdd: float | None = None) -> float:
    """Multiply an energy at ``from_nm`` by this to get it at ``to_nm`` (Stillmaker & Baas);
    both must be tabulated nodes (:func:`check_node`)."""
    a, b = check_node(from_nm), check_node(to_nm)
    va, vb = from_vdd or NOMINAL_VDD[a], to_vdd or NOMINAL_VDD[b]
    fa = sum(c * va ** p for c, p in zip(_ENERGY_COEF[a], (2, 1, 0)))
    fb = sum(c * vb ** p for c, p in zip(_ENERGY_COEF[b], (2, 1, 0)))
    return fb / fa


def area_factor(from_nm: float, to_nm: float) -> float:
    """Multiply a logic or SRAM area at ``from_nm`` by this to get it at ``to_nm``; both must
    be tabulated nodes (:func:`check_node`)."""
    return _AREA_FROM_45[check_node(to_nm)] / _AREA_FROM_45[check_node(from_nm)]
