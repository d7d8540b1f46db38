"""Figure conventions: one style per configuration, read off its fields and kept across figures."""

from fastk_jax.analysis import plotting


def conf(label: str, policy: str = "adaptive", k: int | None = None, scheme: str = "k_sync", **more) -> dict:
    """A configuration's fields as ``Results.configurations`` holds them."""
    return {"label": label, "policy": policy, "scheme": scheme, **({"k": k} if k is not None else {}), **more}


def fixed(k: int, scheme: str = "k_sync", **more) -> dict:
    suffix = "" if scheme == "k_sync" else f", {scheme}"
    return conf(f"k={k}{suffix}", "fixed", k, scheme, **more)


def test_a_fixed_k_keeps_its_color_whatever_is_beside_it():
    a = plotting.styles([fixed(10), fixed(20), fixed(30), fixed(40), conf("adaptive 10->40")])
    b = plotting.styles([fixed(40), conf("bound-optimal (Theorem 1)", "bound_optimal"), fixed(10)])
    assert a[0] == b[2] and a[3] == b[0]
    assert len({s["color"] for s in a}) == 5  # nearby k are distinct
    assert a[4]["color"] == (0.0, 0.0, 0.0) and b[1]["color"] == plotting.OTHER_COLORS[1]


def test_schemes_set_the_line_style_and_lookalikes_fall_back_to_position_colors():
    s = plotting.styles([fixed(4, "k_async"), fixed(4, "k_batch_async"), fixed(4)])
    assert [x["ls"] for x in s] == ["--", ":", "-"]
    assert len({x["color"] for x in s}) == 1  # same k: one color, told apart by the line
    two = plotting.styles([fixed(10, eta=0.1), fixed(10, eta=0.2)])
    assert two[0]["color"] != two[1]["color"]
    several = plotting.styles([conf("adaptive a"), conf("adaptive b"), conf("mine", "schedule")])
    assert len({x["color"] for x in several}) == 3


def test_styles_come_from_fields_not_labels():
    """A fixed k with a label of its own still gets its k's color; a label that looks like a
    fixed k but is another policy does not."""
    mine = plotting.styles([conf("my favourite", "fixed", 10), conf("k=10", "schedule")])
    assert mine[0]["color"] == plotting.k_color(10) and mine[1]["color"] != plotting.k_color(10)
