"""What people run, by audience: cli/ (operators), technician/ (at the pole), emulator/."""
