"""Every attack reports progress per batch, and the long ones per restart or search round."""

import torch

import advlab.attacks.base as base
from advlab.attacks import PGD, make_attack
from advlab.progress import progress_bar


class Recorder:
    def __init__(self, total, desc, *, enabled=True, unit="img"):
        self.total, self.desc, self.enabled, self.updates, self.notes, self.closed = total, desc, enabled, [], [], False

    def update(self, n):
        self.updates.append(n)

    def set_postfix_str(self, text):
        self.notes.append(text)

    def close(self):
        self.closed = True


def test_bar_counts_every_image_and_shows_restarts(monkeypatch):
    bars = []
    monkeypatch.setattr(base, "progress_bar", lambda *a, **k: bars.append(Recorder(*a, **k)) or bars[-1])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.rand(7, 1, 2, 2)
    y = model(x).argmax(1).detach()  # eps 1e-4: no restart succeeds, so all of them run
    PGD(model, eps=1e-4, steps=2, random_start=True, restarts=3, batch_size=3)(x, y)
    (bar,) = bars
    assert (bar.total, bar.desc, bar.enabled, bar.closed) == (7, "pgd", True, True)
    # per batch of 3, 3, 1: a share after each of the 2 restart rounds after the first run, the rest at its end
    assert bar.updates == [1, 2, 1, 2, 1]
    assert "restart 3/3" in bar.notes
    make_attack("fgsm", model, eps=0.1, progress=False)(x, y)
    assert bars[-1].enabled is False


def test_bar_draws_nothing_when_not_a_terminal(capsys):
    bar = progress_bar(5, "x")  # pytest's stderr is not a terminal: ETA lines every 30 s, none for a short step
    bar.update(5)
    bar.close()
    assert capsys.readouterr().err == ""


def test_one_long_batch_moves_the_bar_each_round(monkeypatch):
    """minpgd on a single batch: the bar advances after every bisection round, not only at the end
    (an 82 s call used to sit at 0% with no ETA)."""
    from advlab.attacks import MinPGD

    bars = []
    monkeypatch.setattr(base, "progress_bar", lambda *a, **k: bars.append(Recorder(*a, **k)) or bars[-1])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.rand(8, 1, 2, 2)
    y = model(x).argmax(1).detach()
    MinPGD(model, steps=3, search_steps=4, rtol=1e-12, batch_size=100)(x, y)
    (bar,) = bars
    assert bar.notes[:4] == [f"bisection {k}/4" for k in range(1, 5)]
    assert sum(bar.updates) == 8 and len([u for u in bar.updates if u]) >= 4
