"""Targets load, validate, derive figures, and bad files name the key and the reason."""

from __future__ import annotations

import pytest

from acf.isa.target import TargetError, available_targets, load_target

SHIPPED = {"acf-small", "acf-base", "acf-h200-iso", "acf-dense", "acf-wide", "procrustes-like",
           "tensordash-like", "sigma-like", "tpu-like", "tpu-like-iso-ports"}


def test_all_shipped_targets_load() -> None:
    assert SHIPPED <= set(available_targets())
    for name in available_targets():
        t = load_target(name)
        assert t.peak_macs_per_s > 0 and t.total_area_mm2() > 0
        for cost in t.energy.as_dict().values():
            assert cost.source


def test_derived_figures_of_acf_base() -> None:
    t = load_target("acf-base")
    # 16 clusters x 16 x 16 PEs at 1 GHz
    assert t.peak_macs_per_s == 16 * 256 * 1e9
    # 8 channels x 32 B/cycle at 1 GHz
    assert t.dram_bytes_per_s == 256e9
    # 4x4 mesh: 4 links cross the cut each way, 32 B/cycle
    assert t.bisection_bytes_per_s == 2 * 4 * 32 * 1e9


def test_baselines_switch_features_off() -> None:
    assert load_target("acf-dense").cluster.skip == "none"
    assert load_target("procrustes-like").cluster.skip == "a"
    assert load_target("sigma-like").cluster.dataflow == "flexible"
    tpu = load_target("tpu-like")
    assert (tpu.cluster.dataflow, tpu.cluster.pe_rows, tpu.cluster.pe_cols) == ("systolic", 32, 32)
    assert load_target("acf-h200-iso").numeric.mode == "bf16"
    wide, base = load_target("acf-wide"), load_target("acf-base")
    assert wide.noc.link_bytes == 4 * base.noc.link_bytes and wide.dram.channels == 2 * base.dram.channels
    assert wide.cluster.as_dict() == base.cluster.as_dict()  # only the memory system differs
    iso = load_target("tpu-like-iso-ports")
    # the systolic peer with acf-base's total memory-port bandwidth (one port per grid row)
    assert iso.port_bytes_per_cycle == base.port_bytes_per_cycle == 2 * tpu.port_bytes_per_cycle
    assert iso.cluster.as_dict() == tpu.cluster.as_dict() and iso.peak_macs_per_s == base.peak_macs_per_s


def test_overrides_apply_and_rename() -> None:
    t = load_target("acf-base", {"cluster.lookahead": "4", "fabric.grid": "[2, 2]"})
    assert t.cluster.lookahead == 4 and t.num_clusters == 4
    assert t.config_hash() != load_target("acf-base").config_hash()


@pytest.mark.parametrize(
    "body, key, reason",
    [
        ("[cluster]\npe_rows = 0\n", "cluster.pe_rows", "must be >= 1"),
        ("[cluster]\nskip = \"sometimes\"\n", "cluster.skip", "must be one of"),
        ("[cluster]\nbogus = 1\n", "cluster.bogus", "unknown field"),
        ("[noc]\ntopology = \"torus\"\nvirtual_channels = 1\n", "noc.virtual_channels", "dateline"),
        ("[energy]\nmac_fp32 = 4.6\n", "energy.mac_fp32", "value = "),
        ("[energy]\nmac_fp32 = { value = 4.6, unit = \"pJ\", source = \"\" }\n", "energy.mac_fp32.source", "needs a source"),
        ("[fabric]\ngrid = [4]\n", "fabric.grid", "[x, y]"),
        ("[tech]\nscale_to_nm = 5\n", "tech.scale_to_nm", "nearest node is 7 nm"),
        ("[tech]\nnode_nm = 28\n", "tech.node_nm", "nearest one is 32 nm"),
    ],
)
def test_bad_config_names_key_and_reason(tmp_path, body: str, key: str, reason: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('inherit = "acf-base"\n[target]\nname = "bad"\n' + body)
    with pytest.raises(TargetError) as exc:
        load_target(path)
    msg = str(exc.value)
    assert str(path) in msg and f"key '{key}'" in msg and reason in msg


def test_unknown_target_lists_known_ones() -> None:
    with pytest.raises(TargetError, match="known: .*acf-base"):
        load_target("acf-nope")


def test_not_toml(tmp_path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[cluster\n")
    with pytest.raises(TargetError, match="not valid TOML"):
        load_target(path)


#: flit energies of the shipped targets, pJ per flit of their own link width
SHIPPED_FLIT_PJ = {"acf-base": (25.6, 10.3), "acf-wide": (102.4, 41.2), "tpu-like": (25.6, 10.3),
                   "tpu-like-iso-ports": (51.2, 20.6)}


def _flit_pj(t) -> tuple[float, float]:
    return (t.energy.noc_router_flit.value, t.energy.noc_link_flit.value)


def test_shipped_flit_energies_are_as_their_files_give_them() -> None:
    for name, pj in SHIPPED_FLIT_PJ.items():
        assert _flit_pj(load_target(name)) == pj, name
    # an override of another field, or of link_bytes to its own value, changes none of them
    assert _flit_pj(load_target("acf-base", {"noc.link_bytes": 32, "cluster.lookahead": 4})) == (25.6, 10.3)
    same = load_target("acf-base", {"noc.link_bytes": "32"})
    assert same.config_hash() == load_target("acf-base").config_hash()


def test_set_link_bytes_keeps_the_flit_energy_per_bit() -> None:
    """--set noc.link_bytes=128 makes acf-base's flits 1024 bits: each costs 4x the 256-bit
    flit's energy (it kept 25.6 pJ, a quarter of acf-base's energy per bit), and the source
    text says where the number comes from."""
    wide = load_target("acf-base", {"noc.link_bytes": "128"})
    assert _flit_pj(wide) == pytest.approx((102.4, 41.2))
    # acf-wide's own figures
    assert _flit_pj(wide) == pytest.approx(_flit_pj(load_target("acf-wide")))
    src = wide.energy.noc_router_flit.source
    assert "x4" in src and "1024-bit" in src and "noc.link_bytes=128" in src and "DSENT" in src
    narrow = load_target("tpu-like-iso-ports", {"noc.link_bytes": 16})  # from its own 64 B
    assert _flit_pj(narrow) == pytest.approx((51.2 / 4, 20.6 / 4))
    # a flit energy set alongside is taken as given
    link = {"value": 30.0, "unit": "pJ", "source": "given"}
    given = load_target("acf-base", {"noc.link_bytes": 128, "energy.noc_link_flit": link})
    assert _flit_pj(given) == pytest.approx((102.4, 30.0))
