"""trackstore: persistent clickstream and interaction tracking on ZODB."""
from trackstore.storage import Run
from trackstore.storage import Track
from trackstore.storage import TrackingStorage


__all__ = ['TrackingStorage', 'Track', 'Run']
