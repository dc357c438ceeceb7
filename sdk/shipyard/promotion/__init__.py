"""Promotion: the ordered, resumable, all-or-nothing path from a run to a deployable champion."""
