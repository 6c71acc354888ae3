import asyncio

import pytest

from gateway.deadlines import Deadlines


class Late(Exception):
    pass


async def test_a_waiter_past_its_deadline_fails_and_one_discarded_in_time_does_not():
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    late = loop.create_future()
    served = loop.create_future()
    deadlines.add(late, 0.05, Late)
    deadlines.add(served, 0.05, Late)
    served.set_result("answer")
    deadlines.discard(served)
    started = loop.time()
    with pytest.raises(Late):
        await asyncio.wait_for(late, 5)
    assert loop.time() - started >= 0.05 - 0.01  # never early (loop clock granularity aside)
    assert served.result() == "answer"
    assert len(deadlines) == 0


async def test_the_sweep_stops_when_nothing_waits():
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    waiter = loop.create_future()
    deadlines.add(waiter, 0.01, Late)
    with pytest.raises(Late):
        await asyncio.wait_for(waiter, 5)
    # The sweep that failed the last waiter schedules no further sweep.
    assert deadlines._handle is None


async def test_a_waiter_done_some_other_way_is_left_alone():
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    waiter = loop.create_future()
    deadlines.add(waiter, 0.01, Late)
    waiter.cancel()
    other = loop.create_future()
    deadlines.add(other, 0.02, Late)
    with pytest.raises(Late):
        await asyncio.wait_for(other, 5)
    assert waiter.cancelled()
