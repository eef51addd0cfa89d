"""Who the simulated cloud has: accounts (IAM domains), their keys and users, and their projects.

An account owns projects, one per region as Huawei Cloud creates them (named after the region),
each with its own world of tasks. An account's AK/SK and IAM users reach only its own projects,
and its calls are metered together, as the real API meters a tenant.

    Simulator(accounts=[
        Account("media", access_key=ak, secret_key=sk, projects=[
            Project("0123...", region="cn-north-4", world=WorldSettings(tasks=500)),
            Project("4567...", region="ap-southeast-1"),
        ]),
        Account("archive", iam_users=[IamUser("ops", password)], projects=[Project("89ab...")]),
    ])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from exporter.simulator.faults import FaultSettings
from exporter.simulator.identity import IamUser, stable_id
from exporter.simulator.world import WorldSettings

DEFAULT_REGION = "cn-north-4"


@dataclass(frozen=True)
class Project:
    """A project of a simulated account, with its own tasks.

    ``name`` is what IAM lists it under (``GET /v3/projects?name=...``): the region for the project
    Huawei Cloud creates with the account, ``{region}_{suffix}`` for a sub-project.
    ``faults``: this project's misbehaviour; ``None`` takes the simulator's. Its ``rate_limit`` is
    not used: the request quota is the account's (see ``Simulator``).
    """

    id: str
    region: str = DEFAULT_REGION
    world: WorldSettings = field(default_factory=WorldSettings)
    faults: FaultSettings | None = None
    name: str = ""

    @property
    def iam_name(self) -> str:
        return self.name or self.region


@dataclass(frozen=True)
class Account:
    """An account (IAM domain): its AK/SK, its IAM users and its projects."""

    name: str
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    iam_users: Sequence[IamUser] = ()
    projects: Sequence[Project] = ()

    def __post_init__(self) -> None:
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError(f"account {self.name}: give both access_key and secret_key, or neither")
        # A user logs in with its account's name as the domain, unless it names another one.
        users = tuple(dataclasses.replace(user, domain=user.domain or self.name) for user in self.iam_users)
        object.__setattr__(self, "iam_users", users)
        object.__setattr__(self, "projects", tuple(self.projects))

    @property
    def domain_id(self) -> str:
        return stable_id("domain", self.name)


def check_accounts(accounts: Sequence[Account]) -> None:
    """Raise ``ValueError`` unless names, access keys and project ids are each used once."""
    for what, values in (
        ("account", [account.name for account in accounts]),
        ("access key", [account.access_key for account in accounts if account.access_key]),
        ("project id", [project.id for account in accounts for project in account.projects]),
    ):
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise ValueError(f"{what} used twice: {repeated[0]}")
    if not any(account.projects for account in accounts):
        raise ValueError("the simulator needs at least one project")
