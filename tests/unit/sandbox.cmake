# The sandbox's steps (daemon/sandbox), each in a child process that applies it and then
# tries what it must still do and what it must no longer do: Landlock (reads beneath the
# configured directories survive a rename-replace, nothing else is readable or writable),
# seccomp (exec kills, fork fails, threads and sockets work), the user drop (as root).
ktlsd_unit_test(sandbox sandbox)
