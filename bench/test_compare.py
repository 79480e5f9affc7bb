"""Unit tests of bench/compare.py: `python3 bench/test_compare.py` (scripts/test runs it)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402

OLD = """# Benchmarks

- command: `bash bench/run`

## Throughput

| scenario | size | N | mapispool | msg/s | peer | peer N | peer msg/s | ratio | target | met? |
|---|---|---|---|---|---|---|---|---|---|---|
| upload | 2 KB | 1000 | mapispool flush --upload | 7146 | Postfix postqueue -f | 1000 | 1688 | 4.23× | ≥ 3× | yes |
| upload | 2 KB | 1000 | mapispool flush --upload | 7146 | smtp-source -s 4 | 1000 | 19592 | 0.36× | ≥ 0.8× | **no** (46% of target) |
| upload | 100 KB | 500 | mapispool flush --upload | 1385 | Postfix postqueue -f | 500 | 942 | 1.47× | ≥ 2× | **no** (74% of target) |
| download POP3 | 2 KB | 1000 | mapispool flush --download (POP3) | 6626 | fetchmail (bsmtp) | 1000 | 2082 | 3.18× | ≥ 1× | yes |

Some text | with a bar.

## Latency, memory, idle

| measure | size | median | min | max | samples | target | met? |
|---|---|---|---|---|---|---|---|
| status (warm daemon) ms | - | 2.68 | 2.49 | 3.28 | 30 | — | — |

<!-- analysis -->
## Reading these figures

| scenario | before | now | target |
|---|---|---|---|
| upload 2 KB vs `postqueue -f` | 0.30× | **4.23×** | ≥ 3× |
"""


def with_ratio(md, old, new):
    return md.replace(old, new, 1)


class Ratios(unittest.TestCase):
    def test_every_ratio_row_is_read_by_its_key_cells(self):
        r = compare.ratios(OLD)
        key = ("scenario=upload; size=2 KB; mapispool=mapispool flush --upload; "
               "peer=Postfix postqueue -f")
        self.assertEqual(r[key], 4.23)
        self.assertEqual(r["scenario=upload; size=100 KB; mapispool=mapispool flush --upload; "
                           "peer=Postfix postqueue -f"], 1.47)
        # The hand-written table has a `ratio`-less header: not read; nor is the latency table.
        self.assertEqual(len(r), 4)

    def test_a_fall_of_more_than_ten_percent_is_flagged_and_less_is_not(self):
        new = with_ratio(OLD, "| 4.23× |", "| 3.70× |")  # -12.5 %
        new = with_ratio(new, "| 1.47× |", "| 1.35× |")  # -8.2 %
        new = with_ratio(new, "| 3.18× |", "| 5.00× |")  # up
        got = {k.split("; peer=")[0] + " / " + k.split("; peer=")[1]: (b, n, f)
               for k, b, n, f in compare.compare(OLD, new)}
        self.assertEqual(got["scenario=upload; size=2 KB; mapispool=mapispool flush --upload / "
                             "Postfix postqueue -f"], (4.23, 3.70, True))
        self.assertEqual(got["scenario=upload; size=100 KB; mapispool=mapispool flush --upload / "
                             "Postfix postqueue -f"], (1.47, 1.35, False))
        self.assertFalse(got["scenario=download POP3; size=2 KB; mapispool=mapispool flush --download "
                             "(POP3) / fetchmail (bsmtp)"][2])
        # Exactly ten percent down is not "more than".
        same = with_ratio(OLD, "| 1.47× |", "| 1.323× |")
        self.assertFalse(any(f for *_, f in compare.compare(OLD, same)))

    def test_only_the_keys_this_run_measured_are_compared(self):
        new = with_ratio(OLD, "| 4.23× |", "| 1.00× |")
        key = ("scenario=upload; size=2 KB; mapispool=mapispool flush --upload; "
               "peer=Postfix postqueue -f")
        self.assertEqual([c[0] for c in compare.compare(OLD, new, only_keys={key})], [key])
        self.assertEqual(compare.compare(OLD, new, only_keys=set()), [])

    def test_a_figure_new_in_this_run_has_nothing_to_compare_with(self):
        new = OLD.replace("| download POP3 | 2 KB |", "| download IMAP | 2 KB |")
        keys = [c[0] for c in compare.compare(OLD, new)]
        self.assertFalse(any("download" in k for k in keys))

    def test_the_section_names_what_fell(self):
        new = with_ratio(OLD, "| 4.23× |", "| 2.00× |")
        md = compare.markdown(compare.compare(OLD, new), "the previous BENCHMARKS.md")
        self.assertIn("1 of 4 fell", md)
        self.assertIn("| 4.23× | 2.00× | -53% | **fell by 53%** |", md)
        self.assertIn("No ratio", compare.markdown([], "x"))


class Keeping(unittest.TestCase):
    def test_sections_split_at_level_two_titles_before_the_analysis(self):
        preamble, secs = compare.sections(OLD)
        self.assertTrue(preamble.startswith("# Benchmarks"))
        self.assertEqual(list(secs), ["Throughput", "Latency, memory, idle"])
        self.assertTrue(secs["Throughput"].startswith("## Throughput\n"))

    def test_rows_of_scenarios_not_run_are_kept_after_the_new_ones(self):
        new = """## Throughput

| scenario | size | N | mapispool | msg/s | peer | peer N | peer msg/s | ratio | target | met? |
|---|---|---|---|---|---|---|---|---|---|---|
| upload | 2 KB | 1000 | mapispool flush --upload | 8000 | Postfix postqueue -f | 1000 | 1600 | 5.00× | ≥ 3× | yes |

After.
"""
        old = compare.sections(OLD)[1]["Throughput"]
        merged = compare.merge_rows(old, new, lambda c, h: c[0])
        rows = compare.tables(merged)[0][1]
        self.assertEqual([r[0] for r in rows], ["upload", "download POP3"])
        self.assertIn("| 5.00× |", merged)
        self.assertTrue(merged.rstrip().endswith("After."))


if __name__ == "__main__":
    unittest.main()
