from study.core import labels


def test_canon_has_29_names_in_classlabel_order():
    assert len(labels.CANONICAL) == 29
    assert labels.CANONICAL[:26] == tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert labels.CANONICAL[26:] == ("del", "nothing", "space")


def test_matching_is_case_insensitive():
    assert labels.canonical_label("a") == "A"
    assert labels.canonical_label("Del") == "del"
    assert labels.canonical_label("NOTHING") == "nothing"
    assert labels.canonical_label(" Space ") == "space"


def test_blank_maps_to_nothing_and_is_switchable():
    assert labels.canonical_label("Blank") == "nothing"
    assert labels.canonical_label("blank", blank_as_nothing=False) is None


def test_unknown_names_are_none():
    for name in ("extra", "AA", "", "0", "__MACOSX"):
        assert labels.canonical_label(name) is None


def test_label_index_round_trips():
    for i, name in enumerate(labels.CANONICAL):
        assert labels.label_index(name) == i
