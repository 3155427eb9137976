"""Landlock (Linux >= 5.13): the kernel itself refuses file, exec, TCP and signal access.

Applied by the child to itself before the policy loads. Unlike the audit hook it also binds native
code (pyarrow, ctypes, a compiled extension), but it records nothing: denied calls just fail.
"""
from __future__ import annotations

import ctypes
import os
import stat
import struct

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same on x86_64 and arm64
_PR_SET_NO_NEW_PRIVS = 38
_RULE_PATH_BENEATH = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE = 1 << 13, 1 << 14
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE  # rights a rule on a non-directory may carry
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

READ = READ_FILE | READ_DIR
WORKDIR = (WRITE_FILE | READ_FILE | READ_DIR | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG
           | MAKE_SOCK | MAKE_FIFO | MAKE_SYM | REFER | TRUNCATE)  # everything but exec and devices
DEVICE_RW = READ_FILE | WRITE_FILE | TRUNCATE

_libc = ctypes.CDLL(None, use_errno=True)  # resolved in the server, before any hook exists
_libc.syscall.restype = ctypes.c_long


def _handled_fs(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: execute .. make_sym
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    return rights  # IOCTL_DEV (ABI 5) stays unhandled: device ioctls are not the threat here


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock {what}: {os.strerror(err)}")
    return result


def restrict(rules: list[tuple[str, int]], abi: int) -> None:
    """Allow only `rules` ((path, rights) pairs) from now on, for this process and its children."""
    handled = _handled_fs(abi)
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0  # no rule: every TCP bind/connect fails
    scope = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0  # no signals out of the sandbox
    attr = struct.pack("<QQQ", handled, net, scope)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _check(_libc.syscall(_SYS_CREATE_RULESET, buffer, ctypes.c_size_t(len(attr)),
                                   ctypes.c_uint32(0)), "create_ruleset")
    try:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path this machine lacks needs no rule
            try:
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                allowed = (rights if is_dir else rights & _FILE_ONLY) & handled
                rule = ctypes.create_string_buffer(struct.pack("<Qi", allowed, fd), 12)
                _check(_libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset),
                                     ctypes.c_int(_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0)),
                       f"add_rule {path}")
            finally:
                os.close(fd)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(_libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)),
               "restrict_self")
    finally:
        os.close(ruleset)
