"""Image signatures: shipped weights and stored results must survive a re-rendering of the same phantom on
another CPU (a grey level off in a few pixels) and still refuse other images."""
import numpy as np

from hqanogan_core.provenance import images_signature, keys_match, same_signature


def _images(seed=0, n=20):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64)).astype(np.float32) / 255


def test_one_grey_level_in_a_few_pixels_is_the_same_images():
    a = _images()
    b = a.copy()
    b[3, 10, 10] += 1 / 255                      # what last-bit float differences do after rounding to 8 bits
    b[7, 0, :5] -= 1 / 255
    assert images_signature(a) != images_signature(b)         # not an exact digest ...
    assert same_signature(images_signature(a), images_signature(b))   # ... but the same images


def test_other_images_or_order_or_count_differ():
    a = _images()
    sig = images_signature(a)
    assert not same_signature(sig, images_signature(_images(seed=1)))
    assert not same_signature(sig, images_signature(a[::-1]))
    assert not same_signature(sig, images_signature(a[:-1]))
    brighter = a.copy()
    brighter[5] = np.clip(brighter[5] + 0.01, 0, 1)          # one image changed visibly
    assert not same_signature(sig, images_signature(brighter))
    assert same_signature(None, None) and not same_signature(sig, None)


def test_signature_of_several_arrays_is_their_concatenation():
    a, masks = _images(), _images(2) > 0.5
    assert images_signature(a, masks) == images_signature(a) + " " + images_signature(masks)
    assert images_signature(a, None) == images_signature(a)


def test_keys_match_compares_signatures_loosely_and_the_rest_exactly():
    a = _images()
    b = a.copy()
    b[0, 0, 0] += 1 / 255
    key = {"method": "ae", "weights_sha256": "x", "train_signature": images_signature(a)}
    assert keys_match(key, dict(key, train_signature=images_signature(b)))
    assert not keys_match(key, dict(key, weights_sha256="y"))
    assert not keys_match(key, {**key, "extra": 1})
    assert not keys_match(key, dict(key, train_signature=images_signature(_images(3))))


def test_shipped_weights_accept_a_rerendering_but_not_other_images(tmp_path):
    import json

    from hqanogan_core.methods import METHODS
    from hqanogan_core.methods.learned import images_digest

    a = _images()
    folder = tmp_path / "ae"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(b"x")
    (folder / "manifest.json").write_text(json.dumps({"data": {"train_images_sha256": images_digest(a),
                                                               "train_images_signature": images_signature(a)}}))
    method = METHODS["ae"]()
    b = a.copy()
    b[1, 5, 5] += 1 / 255
    assert method._shipped_fits(folder, a, images_digest(a))
    assert method._shipped_fits(folder, b, images_digest(b))                 # the sha256 differs; the images do not
    other = _images(4)
    assert not method._shipped_fits(folder, other, images_digest(other))
