"""Results kept for redraws are bounded by bytes: the oldest go first, the newest always stays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from decodemo.data.synthetic import make_texture
from decodemo.errors import DecodemoError
from decodemo.service import Service


def test_results_are_kept_within_a_byte_budget(tmp_path):
    paths = []
    for i in range(3):
        img, _ = make_texture(np.random.default_rng([12, i]), size=256)
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(img).save(paths[-1])
    probe = Service()
    one = probe.compare(paths[0], domain="texture")
    held = one.nbytes - len(one.data)  # the upload's bytes are not kept
    assert probe.held_bytes() == held > 256 * 256 * 4 * 3  # the maps at least

    service = Service(probe.registry, keep_bytes=int(2.5 * held))  # room for two such results
    first, second, third = (service.compare(p, domain="texture") for p in paths)
    assert service.held_bytes() <= int(2.5 * held)
    with pytest.raises(DecodemoError, match="no longer held"):
        service.result(first.id)
    assert service.result(second.id).id == second.id and service.result(third.id).id == third.id

    tiny = Service(probe.registry, keep_bytes=1)  # less than one result: the newest is kept anyway
    last = [tiny.compare(p, domain="texture") for p in paths[:2]][-1]
    assert tiny.result(last.id).id == last.id and tiny.held_bytes() == last.nbytes - len(last.data)
