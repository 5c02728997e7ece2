"""Recall@K and the tie-aware hit credit against naive loops written here."""

import itertools

import pytest
import torch

from contextclip.retrieval import caption_positives, hits_at_k, recall_at_k, topk_images


def naive_recall(scores, positives, k):
    """CLIP_benchmark's definition, one query at a time, for tie-free scores."""
    hits = []
    for row, pos in zip(scores.tolist(), positives.tolist()):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        hits.append(any(pos[j] for j in order[:k]))
    return 100.0 * sum(hits) / len(hits)


def naive_tie_credit(row, pos, k):
    """Average over every order of the tied items of 'a positive is in the top k'."""
    values = sorted(set(row), reverse=True)
    groups = [[j for j in range(len(row)) if row[j] == v] for v in values]
    total, count = 0.0, 0
    for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
        order = [j for g in perms for j in g]
        total += any(pos[j] for j in order[:k])
        count += 1
    return total / count


def test_recall_several_captions_per_image_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    n_images, per_image = 12, 3
    text_image = torch.arange(n_images).repeat_interleave(per_image)
    img = torch.nn.functional.normalize(torch.randn(n_images, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(img[text_image] + 0.9 * torch.randn(len(text_image), 8, generator=g), dim=-1)
    scores = txt @ img.T
    pos = caption_positives(text_image, n_images)
    out = recall_at_k(scores, pos, ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert out[f"text_to_image_R@{k}"] == pytest.approx(naive_recall(scores, pos, k))
        assert out[f"image_to_text_R@{k}"] == pytest.approx(naive_recall(scores.T, pos.T, k))
    # image->text uses "any caption": it is at least the best single caption's rate
    assert out["image_to_text_R@1"] > 0


def test_perfect_and_constant_scorers():
    n = 20
    pos = torch.eye(n, dtype=torch.bool)
    perfect = recall_at_k(torch.eye(n), pos, ks=(1, 5))
    assert perfect["text_to_image_R@1"] == 100.0 and perfect["image_to_text_R@1"] == 100.0
    const = recall_at_k(torch.zeros(n, n), pos, ks=(1, 5))
    assert const["text_to_image_R@1"] == pytest.approx(100.0 / n)
    assert const["image_to_text_R@5"] == pytest.approx(500.0 / n)


def test_tie_credit_matches_enumeration_of_orders():
    rows = [
        ([1.0, 1.0, 1.0, 0.0, 0.5], [True, False, False, False, False]),
        ([0.2, 0.9, 0.9, 0.9, 0.1], [False, True, True, False, False]),
        ([0.9, 0.5, 0.5, 0.5, 0.5], [False, False, False, True, False]),
        ([0.3, 0.3, 0.3, 0.3, 0.3], [True, False, True, False, False]),
    ]
    scores = torch.tensor([r for r, _ in rows])
    pos = torch.tensor([p for _, p in rows])
    for k in (1, 2, 3, 4):
        got = hits_at_k(scores, pos, k)
        want = [naive_tie_credit(r, p, k) for r, p in rows]
        assert got.tolist() == pytest.approx(want), k


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="no positive"):
        hits_at_k(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="same 2-d shape"):
        hits_at_k(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.bool), 1)


def test_topk_images_order_and_ties():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.7, 0.7]])
    top = topk_images(text, image, 3)
    assert top[0].tolist() == [1, 2, 3]  # tie between 1 and 2 goes to the lower index
    assert top[1].tolist() == [0, 3, 1]


def test_identical_captions_are_positives_for_every_image_they_describe():
    from contextclip.retrieval import caption_positives, recall_at_k

    # images 0 and 1 are both described as "the digit 7"; image 2 is not
    text_image = torch.tensor([0, 1, 2])
    texts = ["the digit 7", "the digit 7", "a red star"]
    plain = caption_positives(text_image, 3)
    dup = caption_positives(text_image, 3, texts)
    assert plain.sum() == 3 and dup.sum() == 5
    assert dup[0].tolist() == [True, True, False] and dup[2].tolist() == [False, False, True]
    # caption 0 retrieves image 1 first: a miss by image index, a hit by caption text
    scores = torch.tensor([[0.5, 0.9, 0.1], [0.5, 0.9, 0.1], [0.1, 0.2, 0.9]])
    assert recall_at_k(scores, plain, (1,))["text_to_image_R@1"] == pytest.approx(200 / 3)
    assert recall_at_k(scores, dup, (1,))["text_to_image_R@1"] == pytest.approx(100.0)
    # chance follows the positives: a constant scorer finds one of two positives among 3 at k=1 w.p. 2/3
    chance = recall_at_k(torch.zeros(3, 3), dup, (1,))["text_to_image_R@1"]
    assert chance == pytest.approx(100 * (2 / 3 + 2 / 3 + 1 / 3) / 3)


# ---------------------------------------------------------------- attribute-matched positives
# Constructed scenes: what a caption states (its claim, recorded from its template by the
# generator) against what each image shows (``scene_facts``).
from contextclip.data import synthetic as syn  # noqa: E402
from contextclip.retrieval import EXACT_SUFFIX, recall_and_chance  # noqa: E402


def _scene(*objects, relation=None, background="white", tone="light", position=None, mnist_style=False):
    return {"objects": list(objects), "relation": relation, "background": background, "tone": tone,
            "position": position, "mnist_style": mnist_style}


def _digit(label, italic=False, bold=False, colour="black", size="medium", family="serif", stroke=0.0):
    return {"kind": "digit", "label": label, "colour": colour, "size": size, "font": "f", "family": family,
            "bold": bold, "italic": italic, "stroke": stroke, "filled": True}


def _shape(label, colour, size="medium", filled=True):
    return {"kind": "shape", "label": label, "colour": colour, "size": size, "filled": filled}


def _matches(template, own, scenes, pair=None):
    claim = syn.caption_claim(template, own, pair)
    return syn.claim_matrix([claim], [syn.scene_facts(s) for s in scenes])[0].tolist()


def test_an_italic_three_is_answered_by_every_italic_three():
    scenes = [_scene(_digit("3", italic=True)),  # the image the caption was written for
              _scene(_digit("3", italic=True, bold=True, colour="red", size="large"), background="navy", tone="dark"),
              _scene(_digit("3")),  # upright
              _scene(_digit("8", italic=True)),
              _scene(_digit("3", italic=True), _shape("star", "blue"), relation="left")]  # two objects
    assert _matches("an italic number {w}", scenes[0], scenes) == [True, True, False, False, False]
    # naming colour too narrows it: only the red italic 3
    assert _matches("a~ {c} {d}", scenes[1], scenes) == [False, True, False, False, False]


def test_one_pink_diamond_is_answered_by_any_single_pink_diamond():
    own = _scene(_shape("diamond", "pink"))
    scenes = [own,
              _scene(_shape("diamond", "pink", size="small", filled=False), background="navy", tone="dark",
                     position=["top", "left"]),  # fill, size, background and place are not stated
              _scene(_shape("diamond", "purple")),
              _scene(_shape("square", "pink")),
              _scene(_shape("diamond", "pink"), _shape("circle", "blue"), relation="left")]
    assert _matches("one {c} {s}", own, scenes) == [True, True, False, False, False]
    assert _matches("a~ {fill} {s}", own, scenes) == [True, False, True, False, False]  # "a filled diamond"
    assert _matches("a~ {c} {s} on a~ {tone} background", own, scenes) == [True, False, False, False, False]


def test_two_object_claims_respect_the_stated_relation_and_order():
    red, blue = _shape("circle", "red"), _shape("star", "blue")
    left = _scene(red, blue, relation="left")  # red circle left of blue star
    scenes = [left, _scene(blue, red, relation="left"), _scene(red, blue, relation="above"), _scene(red)]
    pair = ({"kind": "shape", "label": "circle", "colour": "red"}, {"kind": "shape", "label": "star", "colour": "blue"})
    assert _matches("a~ {B} to the right of a~ {A}", left, scenes, pair) == [True, False, False, False]
    assert _matches("a~ {A} next to a~ {B}", left, scenes, pair) == [True, True, False, False]
    assert _matches("two objects: a~ {A} and a~ {B}", left, scenes, pair) == [True, True, True, False]
    with pytest.raises(KeyError, match="PAIR_RELATIONS"):
        syn.caption_claim("a~ {A} far from a~ {B}", left, pair)


def test_recall_and_chance_count_every_matching_image_in_both_directions():
    scenes = [_scene(_digit("3", italic=True)), _scene(_digit("3", italic=True, colour="red")),
              _scene(_digit("3")), _scene(_digit("8"))]
    facts = [syn.scene_facts(s) for s in scenes]
    # one caption per image; caption 0 "an italic number three", 1 "a red 3", 2 "the digit three", 3 "an 8"
    claims = [syn.caption_claim("an italic number {w}", scenes[0]), syn.caption_claim("a~ {c} {d}", scenes[1]),
              syn.caption_claim("the digit {w}", scenes[2]), syn.caption_claim("a~ {d}", scenes[3])]
    matches = torch.as_tensor(syn.claim_matrix(claims, facts))
    assert matches.tolist() == [[True, True, False, False], [False, True, False, False],
                                [True, True, True, False], [False, False, False, True]]
    text_image = torch.arange(4)
    exact = caption_positives(text_image, 4)
    pos = caption_positives(text_image, 4, matches=matches)
    # every caption ranks the *next* italic 3 / 3 first: right by attributes, wrong by caption
    scores = torch.tensor([[0.5, 0.9, 0.1, 0.0],   # italic three -> image 1 (italic red 3) first
                           [0.1, 0.9, 0.0, 0.2],   # red 3 -> its own image
                           [0.9, 0.1, 0.3, 0.0],   # "the digit three" -> image 0 (a 3) first
                           [0.8, 0.0, 0.0, 0.5]])  # "an 8" -> image 0 first: wrong either way
    got, items = recall_and_chance(scores, pos, (1,))
    old, _ = recall_and_chance(scores, exact, (1,), suffix=EXACT_SUFFIX)
    assert got["text_to_image_R@1"] == pytest.approx(75.0) and old["text_to_image_R@1_exact"] == pytest.approx(25.0)
    # image -> text: image 0's best caption is caption 2 ("the digit three", true of it): a hit;
    # by caption only it had to be caption 0, which scores 0.5 < 0.9
    assert items["image_to_text_R@1"][0] == 1.0 and naive_recall(scores.T, exact.T, 1) < 100
    assert got["image_to_text_R@1"] == pytest.approx(naive_recall(scores.T, pos.T, 1))
    # chance: a constant scorer finds one of a caption's n_pos positives among 4 at k=1 w.p. n_pos / 4
    assert got["chance_text_to_image_R@1"] == pytest.approx(100 * (2 + 1 + 3 + 1) / 16)
    assert old["chance_text_to_image_R@1_exact"] == pytest.approx(25.0)
    # image -> text chance at k=1: positive captions of the image / all captions
    assert got["chance_image_to_text_R@1"] == pytest.approx(100 * ((2 + 3 + 1 + 1) / 4) / 4)


def test_generated_captions_state_only_what_their_words_say_and_their_own_image_satisfies_them():
    """Over a generated set: own image satisfies every claim; the claim's attributes are in the words;
    the fast matcher equals a brute-force loop."""
    c = syn.generate(syn.CorpusParams(n=300, image_size=16, stream="synthetic_captions"))
    facts = [syn.scene_facts(s) for s in c.specs]
    claims = [cl for cls in c.claims for cl in cls]
    texts = [t for ts in c.captions for t in ts]
    own = [i for i, ts in enumerate(c.captions) for _ in ts]
    m = syn.claim_matrix(claims, facts)
    assert m[range(len(own)), own].all()
    brute = [[syn.satisfies(f, cl) for f in facts] for cl in claims[::7]]
    assert (m[::7] == brute).all()
    size_words = {"small": "small", "medium": "medium", "large": "large"}
    for text, claim in zip(texts, claims):
        low = text.lower()
        for obj in claim["objects"]:
            assert obj.get("label") is not None, text
            if "colour" in obj:
                assert any(w in low for w in syn.COLOUR_WORDS.get(obj["colour"], (obj["colour"],))), (text, claim)
            if "size" in obj:
                assert size_words[obj["size"]] in low, (text, claim)
            assert ("italic" in low or "slanted" in low) == bool(obj.get("italic")), (text, claim)
            assert ("bold" in low) == bool(obj.get("bold")), (text, claim)
        if "background" in claim:
            assert claim["background"] in low, (text, claim)
        if "tone" in claim:
            assert f"{claim['tone']} background" in low, (text, claim)
        if "position" in claim:
            assert " in the " in low, (text, claim)
        assert ("thick" in low or "centred" in low) == bool(claim.get("mnist_style")), (text, claim)
        if len(claim["objects"]) == 2:
            words = low.replace("arrow pointing right", "arrow")  # a shape's name, not a relation
            ordered = any(w in words for w in ("left", "right", "above", "below", "under", "on top"))
            assert (claim["relation"] in ("left", "above")) == ordered, (text, claim)
    # most captions of the set now have more than one correct image
    assert (m.sum(axis=1) > 1).mean() > 0.5


def test_caption_set_without_claims_keeps_exact_matching(tmp_path):
    """Real caption sets (no generator attributes): the default numbers are the caption-only ones, no _exact rows."""
    from eval_fakes import CapSet, PerfectEncoder
    from test_evaluate import make_run

    from contextclip.data.sets import CaptionSet
    from contextclip.evaluate import embed_dataset, evaluate_run

    caps, names = CapSet.make(n_images=4, per_image=1)
    run, cfg = make_run(tmp_path)
    rows = evaluate_run(run, "retrieval", "fakecaps", tmp_path / "res", cfg, model=PerfectEncoder(names), data=caps)
    assert not any(r["metric"].endswith(EXACT_SUFFIX) for r in rows)
    assert {r["metric"]: r["value"] for r in rows}["chance_text_to_image_R@1"] == pytest.approx(25.0)
    # the same images as a generated set: images 0 and 1 are both italic 3s, so caption 0 has two answers
    scenes = [_scene(_digit("3", italic=True)), _scene(_digit("3", italic=True, colour="red")),
              _scene(_digit("5")), _scene(_digit("7"))]
    gen = CaptionSet("fakegen", caps.images, caps.captions,
                     claims=[[syn.caption_claim("an italic number {w}", scenes[0])],
                             [syn.caption_claim("a~ {c} {d}", scenes[1])], [syn.caption_claim("a~ {d}", scenes[2])],
                             [syn.caption_claim("a~ {d}", scenes[3])]],
                     facts=[syn.scene_facts(s) for s in scenes])
    run2, cfg2 = make_run(tmp_path / "g")
    cache = embed_dataset(run2, "fakegen", cfg2, model=PerfectEncoder(names), dataset=gen)
    assert cache["attribute_matches"].sum() == 5 and len(cache["claims"]) == 4
    got = {r["metric"]: r["value"] for r in
           evaluate_run(run2, "retrieval", "fakegen", tmp_path / "res", cfg2, model=PerfectEncoder(names), data=gen)}
    assert got["text_to_image_R@1"] == got["text_to_image_R@1_exact"] == 100.0  # the perfect encoder: own image first
    assert got["chance_text_to_image_R@1"] == pytest.approx(100 * 5 / 16)
    assert got["chance_text_to_image_R@1_exact"] == pytest.approx(25.0)
    with pytest.raises(ValueError, match="claims"):
        CaptionSet("bad", caps.images, caps.captions, claims=[[]], facts=gen.facts).attribute_matches()


def test_grid_frames_every_image_with_the_stated_attributes():
    from contextclip.plots import grid_positives, retrieval_grid

    cache = {"text_image": torch.tensor([0, 1, 2]), "image": torch.zeros(3, 4),
             "captions": ["an italic number three", "a red 3", "an 8"],
             "attribute_matches": torch.tensor([[True, True, False], [False, True, False], [False, False, True]])}
    assert grid_positives(cache)[0].tolist() == [True, True, False]
    assert grid_positives(cache, exact=True)[0].tolist() == [True, False, False]
    topk = {"clip": torch.tensor([[1, 2, 0]]), "contextclip": torch.tensor([[2, 0, 1]])}
    fig = retrieval_grid(["an italic number three"], torch.zeros(3, 3, 8, 8, dtype=torch.uint8), topk,
                         grid_positives(cache)[:1])
    framed = [[ax.spines["top"].get_visible() for ax in sf.axes] for sf in fig.subfigs[0].subfigs]
    assert framed == [[True, False, True], [False, True, True]]
    labels = [ax.get_xlabel() for sf in fig.subfigs[0].subfigs for ax in sf.axes]
    assert labels[0].endswith("\u2713") and not labels[1].endswith("\u2713")
    # readable: image labels of at least 12 pt on a figure of at most 1.3 in per image
    assert min(ax.xaxis.label.get_fontsize() for ax in fig.axes) >= 12
    assert fig.get_figwidth() <= 1.3 * 3 * 2 + 0.6
