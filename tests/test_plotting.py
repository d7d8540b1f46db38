"""Figure conventions: one style per configuration label, kept across figures."""

from fastk_jax.analysis import plotting


def test_a_fixed_k_keeps_its_color_whatever_is_beside_it():
    a = plotting.label_styles(["k=10", "k=20", "k=30", "k=40", "adaptive 10->40"])
    b = plotting.label_styles(["k=40", "bound-optimal (Theorem 1)", "k=10"])
    assert a[0] == b[2] and a[3] == b[0]
    assert len({s["color"] for s in a}) == 5  # nearby k are distinct
    assert a[4]["color"] == (0.0, 0.0, 0.0) and b[1]["color"] == plotting.OTHER_COLORS[1]


def test_schemes_set_the_line_style_and_lookalikes_fall_back_to_position_colors():
    s = plotting.label_styles(["k=4, k_async", "k=4, k_batch_async", "k=4"])
    assert [x["ls"] for x in s] == ["--", ":", "-"]
    assert len({x["color"] for x in s}) == 1  # same k: one color, told apart by the line
    two = plotting.label_styles(["k=10, eta=0.1", "k=10, eta=0.2"])
    assert two[0]["color"] != two[1]["color"]
    several = plotting.label_styles(["adaptive a", "adaptive b", "mine"])
    assert len({x["color"] for x in several}) == 3
