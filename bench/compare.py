"""Comparing a run's ratios with those BENCHMARKS.md held before it, and keeping what a run did
not measure.

Every table of BENCHMARKS.md that has a `ratio` column is read the same way: a row is known by
the cells of its key columns (KEYS), and its ratio is the number in the `ratio` cell
(`4.23×`). The old file and the new one go through the same parser, so a figure is compared
only with the same figure. A ratio that fell by more than TOLERANCE (10 %) is flagged.
"""

import re

# The columns that name what a row measures (whichever of them a table has).
KEYS = ("scenario", "size", "mapispool", "peer", "measure", "queued", "transports")
TOLERANCE = 0.10


def split_row(line):
    """The cells of a markdown table line `| a | b |`, stripped; None for other lines."""
    line = line.strip()
    if not (line.startswith("|") and line.endswith("|")) or len(line) < 2:
        return None
    return [c.strip() for c in line[1:-1].split("|")]


def is_rule(cells):
    return all(re.fullmatch(r":?-{3,}:?", c) for c in cells)


def tables(md):
    """Each table in `md` as (header cells, [row cells, ...])."""
    out = []
    header, rows = None, None
    for line in md.splitlines():
        cells = split_row(line)
        if cells is None:
            if header is not None:
                out.append((header, rows))
            header, rows = None, None
            continue
        if header is None:
            header, rows = cells, []
        elif is_rule(cells):
            continue
        else:
            rows.append(cells)
    if header is not None:
        out.append((header, rows))
    return out


def ratio_value(cell):
    """`4.23×` (or `**0.36×**`) as 4.23; None when the cell holds no ratio."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*×", cell)
    return float(m.group(1)) if m else None


def ratios(md):
    """{key: ratio} for every row of every table of `md` that has a `ratio` column. The key is
    the row's key cells, `column=value` joined by `; ` (the same figure in two files has the
    same key)."""
    found = {}
    for header, rows in tables(md):
        lower = [h.lower() for h in header]
        if "ratio" not in lower:
            continue
        r = lower.index("ratio")
        keys = [i for i, h in enumerate(lower) if h in KEYS]
        for cells in rows:
            if len(cells) != len(header):
                continue
            value = ratio_value(cells[r])
            if value is None:
                continue
            key = "; ".join(f"{lower[i]}={cells[i]}" for i in keys)
            found[key] = value
    return found


def compare(old_md, new_md, only_keys=None, tolerance=TOLERANCE):
    """The ratios in both files, in the new file's order: [(key, old, new, fell)], where `fell`
    is True when new < old × (1 − tolerance). `only_keys`: limit to these keys (the figures this
    run measured; others were copied from the old file and would compare equal)."""
    old = ratios(old_md)
    new = ratios(new_md)
    out = []
    for key, value in new.items():
        if only_keys is not None and key not in only_keys:
            continue
        if key not in old:
            continue
        before = old[key]
        out.append((key, before, value, value < before * (1 - tolerance)))
    return out


SECTION = "Compared with the previous figures"


def markdown(compared, previous):
    """The report's section for `compare`'s answer; `previous` names what was compared with."""
    lines = [f"## {SECTION}\n"]
    if not compared:
        lines.append(f"No ratio of this run was in {previous} to compare with.\n")
        return "\n".join(lines)
    fell = [c for c in compared if c[3]]
    lines.append(
        f"Each ratio this run measured, against the same ratio in {previous}; one that fell by more "
        f"than {TOLERANCE:.0%} is flagged. {len(fell)} of {len(compared)} fell.\n")
    lines.append("| figure | before | now | change | flag |")
    lines.append("|---|---|---|---|---|")
    for key, before, now, down in compared:
        change = (now / before - 1) if before else 0.0
        flag = f"**fell by {-change:.0%}**" if down else ""
        lines.append(f"| {key} | {before:.2f}× | {now:.2f}× | {change:+.0%} | {flag} |")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Keeping what a run did not measure


def sections(md):
    """The generated part of a BENCHMARKS.md (before `<!-- analysis -->`) as (preamble,
    {title: text}) in file order; a section's text starts at its `## ` line."""
    head, _, _ = md.partition("<!-- analysis -->")
    parts = re.split(r"(?m)^(?=## )", head)
    preamble = parts[0]
    out = {}
    for p in parts[1:]:
        title = p.splitlines()[0][3:].strip()
        out[title] = p.rstrip() + "\n"
    return preamble, out


def merge_rows(old_text, new_text, key_of):
    """`new_text`'s table with the rows of `old_text`'s first table whose key (`key_of(cells,
    header)`) no new row has appended: figures this run did not measure stay as they were."""
    old_tables = tables(old_text)
    if not old_tables:
        return new_text
    header, old_rows = old_tables[0]
    new_tables = tables(new_text)
    new_keys = set()
    if new_tables:
        new_keys = {key_of(c, new_tables[0][0]) for c in new_tables[0][1]}
    kept = [c for c in old_rows if len(c) == len(header) and key_of(c, header) not in new_keys]
    if not kept:
        return new_text
    lines = new_text.splitlines()
    # After the last line of the new text's first table.
    last = None
    in_table = False
    for i, line in enumerate(lines):
        if split_row(line) is not None:
            in_table = True
            last = i
        elif in_table:
            break
    if last is None:
        return new_text
    extra = ["| " + " | ".join(c) + " |" for c in kept]
    return "\n".join(lines[:last + 1] + extra + lines[last + 1:]) + "\n"
