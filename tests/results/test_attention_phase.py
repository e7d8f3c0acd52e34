"""Issue 22, item 12: the attention panel's map is laid out right (no reshape bug), and a map
whose alternate rows and columns are near zero says why (the transposed convolution's pixel
phases)."""

from __future__ import annotations

import torch
from torch import nn

from ganbench.results.figures import centre_attention, phase_note, phase_weights


class Recorder(nn.Module):
    """An attention layer by the figure's convention (``record``, ``last_qk``) whose keys
    make the centre of an 8x8 grid attend to one chosen pixel."""

    def __init__(self, target: tuple[int, int], side: int = 8):
        super().__init__()
        self.record, self.last_qk = False, None
        self.side, self.target = side, target

    def forward(self, z):
        b, n = z.shape[0], self.side * self.side
        q = torch.zeros(b, n, 2)
        k = torch.zeros(b, n, 2)
        q[:, :, 0] = 10.0  # every query, the centre's included, looks along axis 0
        row, col = self.target
        k[:, row * self.side + col, 0] = 1.0  # only this pixel's key answers: e^10 vs e^0
        if self.record:
            self.last_qk = (q, k)
        return torch.zeros(b, 1, 4, 4)


def test_the_map_puts_each_weight_at_its_pixel():
    for target in ((2, 5), (7, 0), (0, 7)):
        _, [(name, maps)] = centre_attention(nn.Sequential(Recorder(target)),
                                             torch.zeros(2, 3, 1, 1))
        assert maps.shape == (2, 8, 8)
        flat = int(maps[0].argmax())
        assert divmod(flat, 8) == target  # row-major, as q and k were flattened
        assert torch.allclose(maps.sum((1, 2)), torch.ones(2))


def test_phase_weights_by_hand():
    m = torch.zeros(1, 4, 4)
    m[0, 1::2, 1::2] = 0.25  # all the weight on the odd/odd pixels: 4 of 16
    assert phase_weights(m).tolist() == [[0.0, 0.0], [0.0, 4.0]]
    assert phase_note(m) == "by (row, col) parity: ee 0.00 eo 0.00 oe 0.00 oo 4.00"


def test_no_note_for_maps_without_a_phase_pattern():
    assert phase_note(torch.full((3, 8, 8), 1 / 64)) == ""  # uniform
    m = torch.full((1, 8, 8), 1.0)
    m[0, ::2, ::2] = 1.9  # ee 1.9 against 1.0: under the ratio of 2
    assert phase_note(m / m.sum()) == ""
    m[0, ::2, ::2] = 2.2
    assert phase_note(m / m.sum()).startswith("by (row, col) parity: ee ")
    assert phase_note(torch.ones(1, 1, 1)) == ""  # a 1x1 map has no phases
