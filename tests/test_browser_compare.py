"""The Compare tab in a real browser (as test_browser.py, whose server and browser it uses): three methods give
their numbers in the table, three points in the scatter, the chosen pair in the slider (and another pair without
a rerun), and a comparison PNG to download whose recipe replays."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from test_compare import contains
# (browser, page, server and shots: test_browser's fixtures)
from test_browser import EXAMPLES, browser, page, server, set_number, shots, status_contains, upload  # noqa: F401

# the cells of the Compare tab's table, row by row, header first (gradio's: a header table, then rows of cells)
TABLE = """() => [[...document.querySelectorAll('#compare-table [role=columnheader]')],
    ...[...document.querySelectorAll('#compare-table .virtual-row')].map(row => [...row.querySelectorAll('[role=gridcell]')])
    ].map(cells => cells.map(c => c.textContent.replace('⋮', '').trim()))"""
SLIDER = "() => [...document.querySelectorAll('#compare-slider img')].map(i => i.getAttribute('src')).join(' ')"


def fetch(on, url: str, path):
    """The file at `url`, fetched through the page `on`, saved at `path`."""
    response = on.request.get(url)
    assert response.ok, url
    path.write_bytes(response.body())
    return path


def test_compare_shows_numbers_a_scatter_a_chosen_pair_and_a_comparison_to_download(page, shots,  # noqa: F811
                                                                                       tmp_path):
    import torch

    from latentindigo.imageio import load_image
    from latentindigo.priors import load_prior
    from latentindigo.recipe import COMPARISON_CHUNK, differences, read_recipe, settings_of
    from latentindigo.sampler import load_pixel_models, run

    page.get_by_role("tab", name="Compare").click()
    panel = page.get_by_role("tabpanel").filter(has=page.locator("#compare-image"))
    upload(page, "#compare-image", EXAMPLES / "coffee.png")
    for name in ("PixelINN", "first stage (the start)", "realistic (Real-ESRGAN)", "INN only", "SDEdit"):
        panel.get_by_label(name, exact=True).uncheck()
    set_number(page, "#compare-steps", 4)
    page.click("#compare-button")
    status_contains(page, "#compare-status", "Done")
    status = page.locator("#compare-status").text_content()
    assert "3 methods" in status, status

    # the numbers, with headers that say which way is better
    header, *rows = [row for row in page.evaluate(TABLE) if row]
    assert header[:4] == ["method", "seconds ↓", "consistency (dB) ↑", "NIQE ↓"], header
    assert [row[0] for row in rows] == ["LatentINN", "faithful (restorer)", "bicubic"], rows
    for row in rows:
        assert all(float(cell) > 0 for cell in row[1:4]), row  # seconds, consistency, NIQE
    assert float(rows[0][4]) > 0 and 0 <= float(rows[0][5]) <= 100  # what the diffusion changed
    # the scatter: one point per method (vega draws it in SVG)
    page.wait_for_function("() => document.querySelectorAll('#compare-plot .mark-symbol.role-mark path').length === 3",
                           timeout=30_000)
    legend = page.locator("#compare-plot").text_content()
    assert all(name in legend for name in ("LatentINN", "faithful (restorer)", "bicubic")), legend

    # the slider: bicubic and the default method, then another pair without a rerun
    page.wait_for_function(f"() => ({SLIDER})().includes('bicubic.png') && ({SLIDER})().includes('latent.png')",
                           timeout=30_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "compare-three.png"), full_page=True)
    gallery = page.evaluate("() => [...document.querySelectorAll('#compare-gallery img')].map(i => i.src)")
    page.locator("#compare-left input").click()
    page.get_by_role("option", name="faithful (restorer)").click()
    page.wait_for_function(f"() => ({SLIDER})().includes('faithful.png') && ({SLIDER})().includes('latent.png')",
                           timeout=30_000)
    assert page.locator("#compare-status").text_content() == status  # nothing ran again
    assert page.evaluate("() => [...document.querySelectorAll('#compare-gallery img')].map(i => i.src)") == gallery

    # the comparison PNG: the input and the three results, with every method's recipe; one replays
    with page.expect_download() as download:
        page.locator("#compare-grid a").first.click()
    grid = tmp_path / download.value.suggested_filename
    download.value.save_as(grid)
    assert grid.name == "coffee-comparison-seed" + status.split("seed ")[1].split(";")[0] + ".png"
    with Image.open(grid) as im:
        canvas = np.asarray(im.convert("RGB"))
        recipes = json.loads(im.text[COMPARISON_CHUNK])
    assert list(recipes) == ["latent", "faithful", "bicubic"]
    latent = fetch(page, next(src for src in gallery if "latent.png" in src), tmp_path / "latent.png")
    with Image.open(latent) as im:
        assert contains(canvas, np.asarray(im.convert("RGB")))  # at 1:1
    saved = read_recipe(grid, method="latent")
    assert saved == read_recipe(latent)  # the result's own recipe
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (as the server runs; the tests after this one get theirs back)
    try:
        photo, prior = load_image(EXAMPLES / "coffee.png"), load_prior(saved["prior"]["spec"])
        pixel = load_pixel_models()
        assert differences(saved, photo, prior, pixel) == []
        done = run(photo, settings_of(saved), prior, pixel)
    finally:
        torch.set_num_threads(threads)
    with Image.open(latent) as im:
        assert np.array_equal(np.asarray(done.image), np.asarray(im.convert("RGB")))
