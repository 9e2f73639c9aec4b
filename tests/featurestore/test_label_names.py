"""The word rule for "this label names that class", shared by the labels report and the trainer."""
from featurestore.label_names import names_any_class, names_class


def test_every_word_of_the_class_must_be_a_word_of_the_label():
    assert names_class("red star", "star") and names_class("Traffic-Light pole", "traffic_light")
    assert not names_class("starfish", "star") and not names_class("light", "traffic_light")


def test_any_class():
    assert names_any_class("a blue circle", ["star", "circle"])
    assert not names_any_class("a blue ring", ["star", "circle"]) and not names_any_class("star", [])
