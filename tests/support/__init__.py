"""Helpers shared by the test tiers: private servers on free ports and a real `batchyard up`."""
