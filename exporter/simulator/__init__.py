"""A simulated Huawei Cloud VOD editing-task API (and IAM endpoints) for the demo, the tests
and the benchmarks: same paths, signatures, error bodies and limits as the real one."""

from exporter.simulator.accounts import Account, Project
from exporter.simulator.faults import FaultSettings
from exporter.simulator.identity import IamUser
from exporter.simulator.server import Simulator
from exporter.simulator.world import World, WorldSettings

__all__ = ["Account", "FaultSettings", "IamUser", "Project", "Simulator", "World", "WorldSettings"]
