"""What a run measures: the size of every workload, and the users and chats they use.

Ids are deterministic, so the seeding (orchestrator) and the load (client process) agree on them without
passing 10,000 ids around; only the tokens travel, because they are signed with the server's key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    # (a) one chat: its members are the receiving connections; one sender at each offered rate (msg/s).
    big_members: int
    ramp: tuple[float, ...]
    headline_rate: float
    # (b) many small chats, one sender each, at a fixed total rate (msg/s).
    small_chats: int
    small_members: int
    small_rate: float
    # (b2) chats of a hundred members drawn from the big chat's, one sender each, at a fixed total rate (msg/s):
    # with (a) and (b), three chat sizes to split a message's cost into a fixed part and a part per delivery.
    mid_chats: int
    mid_members: int
    mid_rate: float
    # (c) idle connections measured, after `idle_warmup` connections have exercised the server's code paths.
    idle: int
    idle_warmup: int
    # Connections are opened `batch` at a time, each batch proven live before the next opens.
    batch: int
    # (d) the write path: closed-loop senders, then an open loop at a fixed rate (sends/s).
    write_senders: int
    write_open_rate: float
    # Every measured window follows `warmup` seconds of the same load.
    warmup: float
    window: float
    # (e) the reconnect storm: this many legacy and as many GraphQL clients of the product (the idle workload's
    # users, two connections each) drop at once; `storm_missed` messages go to each of their lobby chats while
    # they are down. The floor opens twice `storm_clients` plain sockets at once.
    storm_clients: int
    storm_missed: int

    def __post_init__(self) -> None:
        if self.headline_rate not in self.ramp:
            raise ValueError("the headline rate must be one of the ramp's rates")
        if self.write_senders > self.small_chats:
            raise ValueError("each write-path sender writes to a small chat of its own")
        if self.mid_chats * self.mid_members > self.big_members:
            raise ValueError("the hundred-member chats' members are the big chat's")
        if self.storm_clients > self.idle:
            raise ValueError("the reconnect storm's users are the idle workload's measured ones")

    @property
    def users(self) -> int:
        return max(self.big_members + self.small_chats * self.small_members, self.idle_warmup + self.idle)

    # -- ids: users 0.. are the big chat's members, then the small chats', in order; idle connections
    # use users 0.. again (one connection each): the warm-up group, then groups of `batch`, each group the
    # members of a lobby chat of its own (so proving a group live costs deliveries to that group only).

    @staticmethod
    def user(i: int) -> str:
        return f"00000000-0000-4000-8000-{i:012x}"

    @staticmethod
    def chat(i: int) -> str:
        return f"00000000-0000-4000-9000-{i:012x}"

    @property
    def big_chat(self) -> str:
        return self.chat(0)

    def small_chat(self, c: int) -> str:
        return self.chat(1 + c)

    def small_member(self, c: int, j: int) -> int:
        return self.big_members + c * self.small_members + j

    def mid_chat(self, c: int) -> str:
        return self.chat(1 + self.small_chats + len(self.idle_groups()) + c)

    def mid_member(self, c: int, j: int) -> int:
        return c * self.mid_members + j

    def idle_groups(self) -> list[range]:
        """The users of the idle connections: the warm-up group first, then the measured ones by batch."""
        end = self.idle_warmup + self.idle
        return [range(self.idle_warmup)] + [
            range(start, min(end, start + self.batch)) for start in range(self.idle_warmup, end, self.batch)
        ]

    def lobby(self, group: int) -> str:
        return self.chat(1 + self.small_chats + group)

    def storm_groups(self) -> list[tuple[int, range]]:
        """The reconnect storm's users by idle group (the index of the group's lobby), in order."""
        end = self.idle_warmup + self.storm_clients
        return [
            (g, range(users.start, min(users.stop, end)))
            for g, users in enumerate(self.idle_groups())
            if g > 0 and users.start < end
        ]

    def chats(self) -> list[tuple[str, list[int]]]:
        """Every chat with its members' user indexes."""
        chats = [(self.big_chat, list(range(self.big_members)))]
        for c in range(self.small_chats):
            chats.append((self.small_chat(c), [self.small_member(c, j) for j in range(self.small_members)]))
        chats += [(self.lobby(g), list(users)) for g, users in enumerate(self.idle_groups())]
        for c in range(self.mid_chats):
            chats.append((self.mid_chat(c), [self.mid_member(c, j) for j in range(self.mid_members)]))
        return chats

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Plan:
        fields = dict(data)
        fields["ramp"] = tuple(fields["ramp"])  # type: ignore[arg-type]
        return cls(**fields)  # type: ignore[arg-type]


FULL = Plan(
    name="full",
    big_members=1000,
    # 2 msg/s: a rate the slower peers keep up with, so that they are compared somewhere in (a).
    ramp=(2, 5, 10, 20, 40, 80),
    headline_rate=20,
    small_chats=100,
    small_members=10,
    small_rate=200,
    mid_chats=10,
    mid_members=100,
    mid_rate=20,
    idle=10_000,
    idle_warmup=20,
    batch=500,
    write_senders=100,
    write_open_rate=500,
    warmup=2.0,
    window=10.0,
    storm_clients=5000,
    storm_missed=10,
)

# A few seconds per server: proves every path works end to end; its figures mean nothing.
SMOKE = Plan(
    name="smoke",
    big_members=20,
    ramp=(20,),
    headline_rate=20,
    small_chats=5,
    small_members=4,
    small_rate=20,
    mid_chats=2,
    mid_members=8,
    mid_rate=20,
    idle=50,
    idle_warmup=5,
    batch=25,
    write_senders=5,
    write_open_rate=50,
    warmup=0.3,
    window=1.0,
    storm_clients=30,
    storm_missed=3,
)
