"""Run untrusted policy code in fresh, contained OS processes.

A candidate policy is one Python source file defining ``fit(train) -> model`` and
``decide(model, rows) -> sequence``. The optimizer never imports, execs or unpickles anything a
candidate produced: this package runs the code in a child process, and the parent only copies
the pickled model as bytes and reads back JSON and ``.npy`` files (``allow_pickle=False``).

    with Sandbox() as box:
        fitted = box.fit(source, train, budget_s=300)
        result = box.decide(source, fitted.model, {"dev": dev, "holdout": holdout},
                            budget_s=60, constants=("THRESHOLD",))

How it works
------------
``Sandbox`` starts a warm fork server (``python -m optimizer.sandbox._server``) that imports
numpy, pandas, pyarrow, scikit-learn, xgboost and scipy once. Each fit or decide is one request:
the parent writes the inputs as Parquet into a private workdir, the server forks a child, the
child contains itself, loads the policy as a fresh module named ``policy``, runs the phase,
writes its outputs and exits; the workdir is wiped afterwards. The wall-clock budget is enforced
from outside: on overrun the server SIGKILLs the child's whole process group ("timeout"). The
parent has its own backstop; if the server dies it reports "crash" and starts a new one.

Layers (``Sandbox.layers`` says which are active; ``describe_isolation()`` says why)
----------------------------------------------------------------------------------
- ``netns``: the server runs in fresh network and mount namespaces (``unshare -n -m`` as root,
  ``unshare -rn -m`` otherwise): no network at all, not even the host's loopback servers, and
  a private /dev/shm (thread pools need POSIX semaphores) that is emptied after every request.
- ``uid-drop``: as root, each child drops to nobody/nogroup with no supplementary groups, so
  file permissions stop reads of root-owned 0600/0700 files (holdout, ledger, MLflow store).
  When the Python install lives under a private folder such as /root, the server's private
  mount namespace covers that folder with an empty tmpfs and re-mounts only the install.
- ``landlock``: the kernel confines the child to reading the Python install and harmless system
  files, and writing its workdir; it may execute no program, open no TCP connection and signal no
  process outside the sandbox. This also binds native code (pyarrow, ctypes, extensions).
- ``audit-hook``: a Python audit hook, installed before the policy loads and impossible to remove,
  denies and records file reads outside the workdir and library folders, any write outside the
  workdir, sockets and name lookups, subprocesses, fork and exec, signals, ctypes use by candidate
  code, dangerous pickle globals and tampering with code objects. Each denial is written to a pipe
  the server drains while the child runs, so catching the PermissionError hides nothing: any
  record makes the status "violation".
- ``rlimit-as`` (``rlimit-data`` on a GPU host, since CUDA reserves address space it never uses):
  memory beyond the server's baseline plus ``memory_mb`` fails with MemoryError ("memory").
- write quota (always on, see ``_quota``): a phase may add at most ``disk_mb`` (default 1024 MiB) and
  ``max_files`` (default 10,000) entries to its workdir and private /dev/shm, deleted files it holds open
  included; the server measures every 0.1 s and kills the group past it ("disk"), and RLIMIT_FSIZE keeps any one
  file under it. A decide worker carries one quota over its life.
- ``scrubbed-env``: the server starts with a minimal environment (PATH, LANG, HOME, thread counts,
  PYTHONHASHSEED=0); no API key, seal key or tracking URI can reach a candidate.
- ``subreaper``: the server adopts orphaned descendants and kills every one after each request,
  including a process that left the child's process group.

``isolation="auto"`` uses every layer the machine offers, ``"strict"`` refuses to start when
netns, uid-drop or Landlock is missing, ``"hook-only"`` (debugging) keeps only the last four.

Limits worth knowing: the audit hook sees Python-level calls only, so native code (pyarrow's
file reads, a fork through ``_posixsubprocess``) is stopped by the OS layers alone; violation
texts name candidate-chosen paths (bounded, 50 x 900 characters); decide constants are read
after decide ran, so treat them like decisions (scorer only); model handles live in the
sandbox's folder and disappear with ``close()``.

Model broker (``Sandbox(broker=...)``, see ``_channel``): a policy may ask a language model
through ``ratchet_llm.complete``; the child writes one JSON request per line to a pipe, the server
relays it to the parent, whose broker session for that phase (told the phase and its row-set names)
answers with text, an error, or a stop that kills the child ("violation"). The time the parent
takes counts against the phase's budget. The child still has no network of its own.

Decide workers (``Sandbox.worker(source, model, budget_s=...)``, see ``_worker`` and ``_host``): for
serving, one contained child per fitted policy that loads the policy and unpickles the model once and then
decides one row file per request, each with its own budget; every layer above applies, and an overrun, a
denied access or a crash ends it (``Worker.alive``). No model broker, live rows only.

Holdout hygiene: in the decide phase (holdout rows present) the child's stdout and stderr go to
/dev/null, ``DecideResult.log`` is always "" and errors are phrased by the parent from a closed
vocabulary (row-set name, lengths, builtin exception names), never from candidate text.
"""
from __future__ import annotations

from optimizer.sandbox._isolation import describe_isolation
from optimizer.sandbox._results import DecideResult, FitResult, ModelHandle, SandboxStatus
from optimizer.sandbox._sandbox import DEFAULT_PRELOAD, Sandbox
from optimizer.sandbox._worker import Worker

__all__ = [
    "DEFAULT_PRELOAD", "DecideResult", "FitResult", "ModelHandle", "Sandbox", "SandboxStatus", "Worker",
    "describe_isolation",
]
