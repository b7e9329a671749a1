"""Hardware-in-the-loop suite: the firmware on emulated and real boards, compared with the host."""
