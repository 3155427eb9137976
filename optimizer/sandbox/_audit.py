"""The audit hook: denies forbidden calls inside the child and records each one for the parent.

Python cannot remove an audit hook once added. The record is written to a pipe the server reads
while the child runs, so it survives the candidate catching the PermissionError. The hook reads no
module globals at call time: every helper and constant is bound as a positional default (an
immutable tuple), so a candidate that imports this module cannot re-point what the hook uses, and
re-assigning __code__ or __defaults__ of the hook or its helpers is itself denied.
"""
from __future__ import annotations

import os
import posix
import sys
from types import FunctionType, MappingProxyType

EXIT_UNRECORDED = 72  # the record channel was tampered with: the child ends, reported as violation

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_DIR_FLAGS = os.O_DIRECTORY | getattr(os, "O_PATH", 0)
_NETWORK = frozenset({
    "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo", "socket.getservbyname",
    "socket.getservbyport", "socket.sethostname", "syslog.openlog", "syslog.syslog",
})
_PEER_EVENTS = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"})
_PROCESS = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "pty.spawn", "os.startfile", "os.killpg", "sys.addaudithook", "gc.get_objects",
    "gc.get_referrers", "gc.get_referents", "sys.remote_exec",
    "sys.settrace", "sys.setprofile",  # a tracer could rewrite the hook's locals as it runs
})
# event -> positions of path arguments that must stay inside the workdir, and of its dir_fd
_MUTATE = MappingProxyType({
    "os.remove": ((0,), 1), "os.rmdir": ((0,), 1), "os.mkdir": ((0,), 2), "os.chmod": ((0,), 2),
    "os.chown": ((0,), 3), "os.rename": ((0, 1), 2), "os.link": ((0, 1), 2),
    "os.truncate": ((0,), None), "os.utime": ((0,), 3), "os.setxattr": ((0,), None),
    "os.removexattr": ((0,), None), "os.chflags": ((0,), None), "os.lchflags": ((0,), None),
    "os.lchmod": ((0,), None), "shutil.chown": ((0,), None), "os.mkfifo": ((0,), 2),
    "os.mknod": ((0,), 3),
})  # a read-only view: the dict behind it is reachable from nowhere
_TAMPER = frozenset({"__code__", "__defaults__", "__kwdefaults__"})
# Native symbols the scientific stack looks up through ctypes (xgboost, threadpoolctl); any
# other lookup could hand a candidate libc's open/connect/system, whoever appears to ask.
_SYMBOLS = ("XG", "omp_", "kmp_", "openblas", "scipy_openblas", "MKL_", "mkl_", "bli_",
            "flexiblas", "goto", "dl_iterate_phdr", "gnu_get_libc_version", "PyCapsule_")
_PICKLE_MODULES = frozenset({"os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "ctypes",
                             "importlib", "runpy", "pty", "code", "marshal", "io", "_io"})
_PICKLE_BUILTINS = frozenset({"eval", "exec", "compile", "open", "__import__", "breakpoint", "input"})


def _text(value, join="".join, bjoin=b"".join, decode=bytes.decode, type_=type, str_=str,
          bytes_=bytes, int_=int, isinstance_=isinstance, list_=list, tuple_=tuple):
    """Show a value without running candidate code (no __repr__, no overridden str methods)."""
    if isinstance_(value, str_):
        return join((value,))
    if isinstance_(value, bytes_):
        return decode(bjoin((value,)), "utf-8", "backslashreplace")
    if type_(value) is int_:
        return int_.__repr__(value)
    if type_(value) is list_ or type_(value) is tuple_:
        items = []
        for item in value[:20]:
            if isinstance_(item, str_):
                items.append("'" + join((item,)) + "'")
            elif isinstance_(item, bytes_):
                items.append("'" + decode(bjoin((item,)), "utf-8", "backslashreplace") + "'")
            else:
                items.append("<object>")
        return "[" + ", ".join(items) + "]"
    return "<object>"


def _resolve(path, base, lstat=posix.lstat, readlink=posix.readlink, getcwd=posix.getcwd,
             oserror=OSError, len_=len):
    """(absolute path with symlinks followed, st_mode or 0 when missing, went through a magic link)."""
    if not path.startswith("/"):
        path = (base if base is not None else getcwd()) + "/" + path
    pending = path.split("/")
    pending.reverse()
    parts: list = []
    mode, hops = 0, 0
    while pending:
        name = pending.pop()
        if name == "" or name == ".":
            continue
        if name == "..":
            if parts:
                parts.pop()
            continue
        parts.append(name)
        current = "/" + "/".join(parts)
        try:
            mode = lstat(current).st_mode
        except oserror:
            mode = 0
            continue
        if mode & 0o170000 != 0o120000:
            continue
        hops += 1
        if hops > 40 or (parts[0] == "proc" and len_(parts) > 3 and parts[-2] in ("fd", "map_files")):
            return current, 0, True  # /proc/<pid>/fd/N re-opens the object itself, whatever it is
        target = readlink(current)
        parts.pop()
        if target.startswith("/"):
            parts.clear()
        segments = target.split("/")
        segments.reverse()
        pending.extend(segments)
    return "/" + "/".join(parts), mode, False


def _under(path, roots):
    for root in roots:
        if path == root or path.startswith(root + "/"):
            return True
    return False


def install(*, record_fd: int, workdir: str, read_roots: tuple[str, ...],
            list_roots: tuple[str, ...], trusted_code: tuple[str, ...],
            ctypes_dir: str) -> None:
    """Add the hook for this process; `record_fd` is the write end of the server's pipe."""
    st = os.fstat(record_fd)
    hook = _make_hook(record_fd, (st.st_dev, st.st_ino), workdir, read_roots, list_roots,
                      trusted_code, ctypes_dir + "/", str(os.getpid()))
    sys.addaudithook(hook)


def _make_hook(fd, identity, workdir, read_roots, list_roots, trusted_code, ctypes_dir, pid):
    own_proc = ("/proc/" + pid, "/proc/self", "/proc/thread-self")
    reads = (workdir,) + tuple(read_roots) + own_proc
    lists = reads + tuple(list_roots)
    writes = (workdir, "/dev/null")

    def hook(event, args, fd=fd, identity=identity, workdir=(workdir,), reads=reads,
             lists=lists, writes=writes, trusted=tuple(trusted_code), ctypes_dir=ctypes_dir,
             pid=int(pid), resolve=_resolve, under=_under, text=_text, network=_NETWORK,
             process=_PROCESS, mutate=_MUTATE, tamper=_TAMPER, symbols=_SYMBOLS,
             pickle_modules=_PICKLE_MODULES, pickle_builtins=_PICKLE_BUILTINS,
             write_flags=_WRITE_FLAGS, dir_flags=_DIR_FLAGS, fstat=posix.fstat,
             write=posix.write, readlink=posix.readlink, exit_=posix._exit, getframe=sys._getframe,
             denied=PermissionError, type_=type, str_=str, bytes_=bytes, int_=int,
             tuple_=tuple, isinstance_=isinstance, len_=len, oserror=OSError,
             peer_events=_PEER_EVENTS, unrecorded=EXIT_UNRECORDED, function_t=FunctionType):
        message = None
        if event == "open":
            target, mode, flags = args[0], args[1], args[2]
            if type_(target) is int_:
                return  # an fd the child already holds
            shown = text(target)
            real, st_mode, magic = resolve(shown, None)
            if isinstance_(mode, str_):
                mode = text(mode)
                writing = "w" in mode or "a" in mode or "x" in mode or "+" in mode
            else:
                writing = isinstance_(flags, int_) and flags & write_flags != 0
            is_dir = st_mode & 0o170000 == 0o040000 or (isinstance_(flags, int_) and flags & dir_flags)
            if magic or not under(real, writes if writing else reads) or (
                    is_dir and not under(real, workdir)):
                message = "open " + shown + (" for write" if writing else " for read")
                if real != shown and not magic:
                    message += " (-> " + real + ")"
        elif event == "os.listdir" or event == "os.scandir":
            target = args[0]
            if target is not None and type_(target) is not int_:
                shown = text(target)
                real, st_mode, magic = resolve(shown, None)
                if magic or not under(real, lists):
                    message = "list directory " + shown
        elif event in network:
            if event.startswith("syslog."):
                message = event  # its text could carry row values: name the call only
            else:
                at_address = event in peer_events
                where = args[1] if at_address and len_(args) > 1 else args[0]
                if type_(where) is tuple_ and len_(where) >= 2:
                    shown = text(where[0]) + ":" + text(where[1])
                else:
                    shown = text(where)
                if event == "socket.getaddrinfo" and len_(args) > 1 and args[1] is not None:
                    shown += ":" + text(args[1])
                message = event + " " + shown
        elif event in process:
            if event == "subprocess.Popen":
                message = event + " " + text(args[1])
            elif event == "os.system":
                message = event + " " + text(args[0])
            elif event == "os.exec" or event == "os.posix_spawn":
                message = event + " " + text(args[0]) + " " + text(args[1])
            elif event == "os.spawn":
                message = event + " " + text(args[1]) + " " + text(args[2])
            elif event.startswith("gc."):
                message = event + " (introspection of the sandbox)"
            else:
                message = event
        elif event == "os.kill":
            if args[0] != pid:
                message = "os.kill " + text(args[0])
        elif event in mutate:
            positions, dir_at = mutate[event]
            base = None
            if dir_at is not None and len_(args) > dir_at and type_(args[dir_at]) is int_ and (
                    args[dir_at] >= 0):  # -1 or None: relative to the working directory
                base = readlink("/proc/self/fd/" + int_.__repr__(args[dir_at]))
            for at in positions:
                target = args[at]
                if type_(target) is int_:
                    continue
                shown = text(target)
                real, st_mode, magic = resolve(shown, base)
                if magic or not under(real, workdir):
                    message = event + " " + shown
                    break
        elif event == "os.symlink":
            link, _, magic = resolve(text(args[1]), None)
            source = text(args[0])
            anchor = link.rsplit("/", 1)[0] if not source.startswith("/") else None
            real, _, magic2 = resolve(source, anchor)
            if magic or magic2 or not under(link, workdir) or not under(real, workdir):
                message = "os.symlink " + text(args[1]) + " -> " + source
        elif event == "object.__setattr__" or event == "object.__delattr__":
            target = args[0]
            if isinstance_(args[1], str_) and text(args[1]) in tamper and (
                    target is resolve or target is text or target is under or (
                        type_(target) is function_t and target.__code__ is getframe(0).f_code)):
                message = event + " " + text(args[1]) + " (tampering with the audit hook)"
        elif event == "pickle.find_class":
            module, name = text(args[0]), text(args[1])
            if module.split(".")[0] in pickle_modules or (
                    module == "builtins" and name in pickle_builtins):
                message = "pickle.find_class " + module + "." + name
        elif event == "import":
            if len_(args) > 1 and isinstance_(args[1], str_):
                real, st_mode, magic = resolve(text(args[1]), None)
                if magic or not under(real, trusted):  # native code the candidate wrote itself
                    message = "import extension " + text(args[1])
        elif event.startswith("ctypes."):
            if event.startswith("ctypes.dlsym"):
                symbol = text(args[1]) if len_(args) > 1 else "<object>"
                if not symbol.startswith(symbols):
                    message = event + " " + symbol
            else:
                frame = getframe(1)
                while frame is not None and text(frame.f_code.co_filename).startswith(ctypes_dir):
                    frame = frame.f_back
                caller = "" if frame is None else text(frame.f_code.co_filename)
                if not under(caller, trusted):  # the candidate itself reached for ctypes
                    message = event + " " + (text(args[0]) if len_(args) > 0 else "")
        if message is None:
            return
        try:
            st = fstat(fd)
            intact = st.st_dev == identity[0] and st.st_ino == identity[1]
            if intact:
                write(fd, (message[:900] + "\n").encode("utf-8", "backslashreplace"))
        except oserror:
            intact = False
        if not intact:
            exit_(unrecorded)
        raise denied("ratchet sandbox: " + message)

    return hook
