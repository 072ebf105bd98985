"""Where a playbook run's time goes: wall and controller CPU seconds per task, summed over its hosts' results,
written as JSON.

    ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins ANSIBLE_CALLBACKS_ENABLED=task_times \
    TASK_TIMES_OUT=times.json ansible-playbook site.yml

A task's time runs from its start to the next task's start (or the end of the play); under `strategy: free` tasks
of different hosts overlap, so a task's share is only a guide there. CPU is the controller's (user + system of
ansible-playbook and the workers it forked and reaped), charged the same way. ansible.posix's profile_tasks does this too,
but the collection is not installed here; this uses ansible-core's callback API only.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections import defaultdict

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_times
type: aggregate
short_description: wall seconds and result counts per task, as JSON
description:
  - Writes, at the end of the run, every task's summed wall time, the controller's CPU seconds, and how many host
    results it had (ok, changed, skipped) to the file named by TASK_TIMES_OUT.
requirements:
  - enable in ANSIBLE_CALLBACKS_ENABLED
"""


def cpu_now() -> float:
    """CPU seconds (user + system) of this process and the children it reaped: the task workers."""
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._current = None
        self._started = None
        self._seconds = defaultdict(float)
        self._cpu = defaultdict(float)
        self._cpu_started = 0.0
        self._results = defaultdict(lambda: defaultdict(int))

    def _close(self):
        if self._current is not None:
            self._seconds[self._current] += time.monotonic() - self._started
            self._cpu[self._current] += cpu_now() - self._cpu_started
        self._current = None

    def _open(self, task):
        self._close()
        self._current = task.get_name()  # "role : name" already
        self._started, self._cpu_started = time.monotonic(), cpu_now()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._open(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._open(task)

    def _count(self, result, kind):
        name = result._task.get_name()
        self._results[name][kind] += 1

    def v2_runner_on_ok(self, result):
        self._count(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_skipped(self, result):
        self._count(result, "skipped")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, "failed")

    def v2_playbook_on_stats(self, stats):
        self._close()
        out = os.environ.get("TASK_TIMES_OUT")
        if not out:
            return
        tasks = [
            {
                "task": name,
                "seconds": round(seconds, 3),
                "cpu": round(self._cpu[name], 3),
                **self._results.get(name, {}),
            }
            for name, seconds in sorted(self._seconds.items(), key=lambda item: -item[1])
        ]
        with open(out, "w", encoding="utf-8") as f:
            json.dump(tasks, f, indent=1)
