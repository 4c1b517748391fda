"""stages/enhancer.py: when the enhancer is validated within an epoch (the reference's rule, by hand)."""
import pytest

from stages.enhancer import validation_points


@pytest.mark.parametrize("per_epoch,val_time,points", [
    (173, 2, {86, 172}),          # 173 // 2 = 86: the reference never validates after batch 173
    (122, 2, {61, 122}),          # LOL-v1: 485 pairs, batch 4, last batch kept
    (122, 1, {122}),
    (7, 3, {2, 4, 6}),            # 7 // 3 = 2
    (10, 4, {2, 4, 6, 8, 10}),    # 10 // 4 = 2: five points for val_time 4, as the reference
    (3, 2, {2, 3}),               # step 1: batch 1 is skipped (the reference's i > 0)
    (2, 2, {2}),
    (3, 5, {2, 3}),               # fewer batches than val_time: the reference divides by zero; step 1 here
    (1, 1, {1}),                  # a one-batch epoch: never validated in the reference; here after its batch
    (1, 3, {1}),
])
def test_validation_points_follow_the_reference(per_epoch, val_time, points):
    assert validation_points(per_epoch, val_time) == points


def test_validation_points_equal_the_reference_expression_where_it_is_defined():
    for per_epoch in range(2, 60):
        for val_time in range(1, per_epoch + 1):
            eval_now = per_epoch // val_time
            ref = {i + 1 for i in range(per_epoch) if (i + 1) % eval_now == 0 and i > 0}
            assert validation_points(per_epoch, val_time) == ref, (per_epoch, val_time)


@pytest.mark.parametrize("per_epoch,val_time", [(0, 2), (5, 0), (-1, 1)])
def test_validation_points_refuse_bad_arguments(per_epoch, val_time):
    with pytest.raises(ValueError, match="per_epoch and val_time"):
        validation_points(per_epoch, val_time)
