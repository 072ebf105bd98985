"""How the toolkit writes numbers and tables for people: one rule for every table the plays print (the plan,
status, store digests) and every GiB figure in them and in messages."""

GIB = 2**30


def gib(value):
    """Bytes as GiB with one decimal, the unit and precision of every table and message: 51539607552 -> 48.0."""
    return f"{value / GIB:.1f}"


def text_table(rows):
    """ROWS (the header first, then tuples of strings) as lines of left-aligned columns two spaces apart, with no
    trailing spaces: the shape of every table the plays print."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
