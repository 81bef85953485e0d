"""Priority: the Clara job priorities, defined once for the whole project.

``immediate`` jobs wait in their own queue, drained before any other is served; ``high``,
``normal`` and ``low`` share the rest by weight (default 4:2:1), so a lower class is served less
often but never starved. The C++ scheduler applies the policy at every operator dispatch; the
server's admission queue and the cluster's slot table use the same one
(:mod:`clara_rt.fair_queue`). :mod:`clara_rt.job` re-exports these names.
"""

from __future__ import annotations

import enum
from typing import Literal, get_args

from clara_rt.errors import PriorityError

__all__ = ["PRIORITY_NAMES", "Priority", "PriorityName"]


class Priority(enum.IntEnum):
    """Clara job priorities; a lower value is more urgent.

    ``IMMEDIATE`` jobs wait in their own queue, drained before any other is served; ``HIGH``,
    ``NORMAL`` and ``LOW`` share the rest by weight (default 4:2:1), so a lower class is served
    less often but never starved. Applied at every operator dispatch.
    """

    IMMEDIATE = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @classmethod
    def parse(cls, value: Priority | str | int) -> Priority:
        """Accept a :class:`Priority`, its name in any case (``"high"``) or its value.

        Raises:
            PriorityError: anything else (a ``ValueError``); the message lists the names.
        """
        if isinstance(value, Priority):
            return value
        if isinstance(value, str):
            found = _BY_NAME.get(value)  # the common case: a lower-case name
            if found is not None:
                return found
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
            return cls(value)
        names = ", ".join(p.name.lower() for p in cls)
        raise PriorityError(f"unknown priority {value!r}; priorities are: {names}")

    @property
    def label(self) -> str:
        """The lower-case name used by the CLI, the REST API and YAML (``"high"``)."""
        return self.name.lower()


_BY_NAME: dict[str, Priority] = {p.name.lower(): p for p in Priority}

#: A priority's name, for typed APIs and the REST schema (the names of :class:`Priority`).
PriorityName = Literal["immediate", "high", "normal", "low"]

#: Priority names, most urgent first: the one list the CLI, server, DICOM adapter, cluster and
#: benchmarks use.
PRIORITY_NAMES: tuple[str, ...] = get_args(PriorityName)
if tuple(p.label for p in Priority) != PRIORITY_NAMES:  # one definition: the two cannot drift
    raise ImportError("clara_rt.priority: PriorityName and Priority disagree")
