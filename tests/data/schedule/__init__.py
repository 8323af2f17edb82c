"""Job functions the scheduler tests reference as ``tests.data.schedule.jobs:...``."""
