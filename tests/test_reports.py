"""The notes and plots people read after training: no spurious warnings, readable figures."""
from model.reports import overfit_notes


def row(epoch, train_acc, photo_acc, train_loss, photo_loss):
    return {"epoch": epoch, "train_accuracy": train_acc, "photo_accuracy": photo_acc,
            "train_loss": train_loss, "photo_loss": photo_loss}


DIVERGING = [row(1, .60, .55, 1.5, 1.2), row(2, .80, .60, 1.0, 1.0), row(3, .90, .60, .7, 1.1),
             row(4, .97, .58, .5, 1.3)]


def test_no_overfitting_note_on_runs_too_short_to_tell():
    assert overfit_notes(DIVERGING[:2], {}, gap=0.1) == []


def test_diverging_run_gets_both_notes():
    notes = overfit_notes(DIVERGING, {}, gap=0.1)
    assert len(notes) == 2
    assert "0.3900 above photo validation" in notes[0]
    assert "lowest at epoch 2 and rose for 2 epochs" in notes[1]


def test_sign_mnist_note_needs_a_validation_set_large_enough_to_mean_something():
    scores = {"sign_mnist_val": {"images": 120, "accuracy": 1.0},
              "sign_mnist_test": {"images": 1200, "accuracy": 0.9}}
    steady = [row(e, .7, .7, 1.0 - e / 10, 1.0 - e / 10) for e in range(1, 5)]
    assert overfit_notes(steady, scores, gap=0.1) == []
    scores["sign_mnist_val"]["images"] = 2745
    assert "near-twins" in overfit_notes(steady, scores, gap=0.1)[0]


def test_progress_bar_eta_counts_batches(monkeypatch):
    """4 of 60 batches in 2 s: 56 left at 0.5 s each is 28 s (it used to divide the batches
    left by images per second and said 0 s)."""
    import io
    from model import train as T
    clock = iter([99.0, 100.0, 102.0])              # made, epoch start, 4th batch
    monkeypatch.setattr(T.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    p = T.Progress("bar", out)
    p.start()
    p.update(4, 60, 3.7713)
    assert "4/60 batches loss 3.7713 eta   28s" in out.getvalue()


def test_timing_line_after_a_resume_does_not_claim_training_outlasted_its_stage():
    from model.bundle import timing
    assert timing(508.2, 529.0) == "training 508s, whole stage 529s"
    assert timing(40.0, 19.0) == ("training 40s including the interrupted run it resumed "
                                  "from, this run 19s")
