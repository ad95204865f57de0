from aigate.clock import now_ms
from aigate.engine.ids import Snowflake, new_chat_id, snowflake_ms


def test_snowflakes_are_unique_increasing_and_carry_time_and_worker():
    a, b = Snowflake(1), Snowflake(2)
    ids = [a.next() for _ in range(20_000)]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert not set(ids) & {b.next() for _ in range(20_000)}
    assert abs(snowflake_ms(ids[-1]) - now_ms()) < 5_000
    assert (ids[0] >> 12) & 1023 == 1


def test_chat_ids_look_like_the_seed():
    ids = {new_chat_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 18 and i.isalnum() and i.isascii() for i in ids)


def test_chat_id_letters_are_spread_over_the_whole_alphabet_at_every_position():
    ids = [new_chat_id() for _ in range(4000)]
    for position in range(18):
        seen = {i[position] for i in ids}
        assert len(seen) == 62, (position, len(seen))  # 4000 draws miss a letter with p < 1e-25
