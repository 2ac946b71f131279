"""The segmented collections under the indexes and the hit-id set."""
import unittest

from trackstore.hitstore import IdSet
from trackstore.index import Segmented


def keys(start, count):
    return [b'%012d' % n for n in range(start, start + count)]


def filled(segmented):
    """``segmented`` after 8 batches of 10 keys, each sorting before the
    newest segment's end, so each makes a segment of its own (until 8 of
    one size class are merged into one)."""
    for n in range(8):
        segmented.add(keys(n, 1)[:1] + keys(1000 + 10 * n, 9))
    return segmented


class SegmentedTests(unittest.TestCase):

    def test_random_inserts_go_to_new_segments_and_merge(self):
        s = filled(Segmented())
        self.assertEqual(len(s.segments), 1)
        self.assertEqual(len(s), 80)
        self.assertEqual(list(s.keys()), sorted(s.keys()))
        self.assertIn(keys(3, 1)[0], s)

    def test_a_cap_stops_merging_large_segments(self):
        class Capped(Segmented):
            MAX_LEVEL = 1       # segments of 8 keys and more stay apart
        s = filled(Capped())
        self.assertEqual(len(s.segments), 8)
        self.assertEqual(len(s), 80)
        self.assertEqual(list(s.keys()), list(filled(Segmented()).keys()))
        self.assertEqual(list(s.keys()), sorted(s.keys()))

    def test_the_hit_id_set_is_capped(self):
        self.assertEqual(IdSet.MAX_LEVEL, 6)
        self.assertEqual(IdSet.level(262144 - 1), 5)
        self.assertEqual(IdSet.level(262144), 6)
