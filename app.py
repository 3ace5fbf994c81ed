"""Home: which models are loaded, on which device, and where to go next.

Run with:  streamlit run app.py
"""

from contextlib import asynccontextmanager

import streamlit as st

from ui import warmup

#: Test sets every model is shown against, by their key in a card's ``evaluations``.
TEST_SETS = {"cats_vs_dogs/test": "Kaggle test", "oxford_pets": "Oxford-IIIT Pet"}


def test_figures(card) -> dict[str, dict]:
    """Return the card's figures per test set, the Kaggle one from ``card.test`` when that is all."""
    figures = dict(card.evaluations)
    if "cats_vs_dogs/test" not in figures and "accuracy" in (card.test or {}):
        figures["cats_vs_dogs/test"] = card.test
    return figures


def accuracy_text(figures: dict | None) -> str:
    """Return e.g. '96.55% of 2,000 photos (96.50% with flip TTA)' for one test set's figures."""
    if not figures or "accuracy" not in figures:
        return "not evaluated"
    text = f"{figures['accuracy']:.2%}"
    if figures.get("n"):
        text += f" of {int(figures['n']):,} photos"
    if figures.get("tta"):
        return text + " (flip TTA)"
    flipped = figures.get("flip_tta") or {}  # models.evaluate --tta keeps both figures
    return text + (f" ({flipped['accuracy']:.2%} with flip TTA)" if "accuracy" in flipped else "")


def home() -> None:
    """The home page's content."""
    st.title("What does the network look at?")
    st.write(
        "Explain cat-vs-dog (and other) image classifiers: predictions, feature maps and class "
        "activation maps (Grad-CAM and relatives), layer by layer."
    )
    # TensorFlow loads with these (the title above shows first, on a fresh server).
    warmup.start().wait_for_tensorflow()
    from explain.device import describe_device
    from ui.state import sidebar_models, try_load

    entries = sidebar_models()
    st.caption(f"Computing on: **{describe_device()}**")

    sets = dict(TEST_SETS)
    for entry in entries:
        sets.update({key: key for key in test_figures(entry.card) if key not in sets})
    rows = {}
    for entry in entries:
        card, figures = entry.card, test_figures(entry.card)
        size = card.preprocessing.input_size
        rows[entry.name] = {
            "model": entry.name,
            "architecture": card.architecture,
            "parameters": "…",
            "input": f"{size[0]}×{size[1]}×{card.preprocessing.channels}" if entry.has_card else "…",
            "classes": ", ".join(card.class_names) or "…",
            **{f"{label} accuracy": accuracy_text(figures.get(key)) for key, label in sets.items()},
            "explainable layers": "…",
            "source": entry.source,
        }
    if rows:
        st.subheader("Models")
        st.caption(
            "Accuracy on photos the models were never trained on: the Kaggle test set "
            "(../shared/data/cats_vs_dogs/test) and the Oxford-IIIT Pet photos, from each model's card."
        )
    table = st.empty()
    if rows:
        table.dataframe(list(rows.values()), hide_index=True, width="stretch")

    # The background warm-up (ui.warmup) is loading these already; each wait ends when it has.
    problems = []
    progress = st.progress(0.0, text="Loading models…") if entries else None
    for i, entry in enumerate(entries):
        loaded, error = try_load(entry)
        if progress:
            progress.progress((i + 1) / len(entries), text=f"Loaded {entry.name}")
        if error:
            problems.append(f"**{entry.name}** ({entry.path.name}): {error}")
            del rows[entry.name]
            continue
        explainer = loaded.explainer
        rows[entry.name].update(
            {
                "architecture": loaded.card.architecture,
                "parameters": f"{loaded.parameters / 1e6:.1f} M",
                "input": "×".join(str(s) for s in explainer.input_shape),
                "classes": ", ".join(explainer.class_names),
                "explainable layers": f"{len(explainer.layers)} ({len(explainer.layers.blocks)} blocks)",
            }
        )
    if progress:
        progress.empty()
    if rows:
        table.dataframe(list(rows.values()), hide_index=True, width="stretch")
    elif not problems:
        st.warning(
            "No models found: put .keras files with their cards in models/shipped, or set "
            "CVD_MODELS_DIR (or the sidebar field) to a folder of them."
        )
    for message in problems:
        st.error(message)
    warm_up = warmup.start()
    if warm_up.states:
        st.caption(f"Loaded and traced in the background since the server started: {warm_up.summary()}")
    warnings = {name: None for name in rows}
    for entry in entries:
        warnings[entry.name] = (entry.card.test or {}).get("warning")
    warnings.update(st.session_state.get("degenerate", {}))
    for name, warning in warnings.items():
        if warning:
            st.warning(f"**{name}**: {warning}")

    st.subheader("Where to go next")
    st.page_link(
        "pages/1_Inspect.py",
        label="Inspect: upload photos, see the prediction, feature maps and Grad-CAM at any layer",
        icon=":material/search:",
    )
    st.page_link(
        "pages/2_Layer_depth.py",
        label="Layer depth: ResNet-50 and ResNet-101 side by side, the explanation at every residual block",
        icon=":material/layers:",
    )
    st.page_link(
        "pages/3_Training_curves.py",
        label="Training curves: accuracy and loss of every run, train against validation",
        icon=":material/show_chart:",
    )
    st.page_link(
        "pages/4_Errors.py",
        label="Errors: evaluate on labelled photos; the mistakes, and what the model looked at",
        icon=":material/report:",
    )
    st.page_link(
        "pages/5_Models.py",
        label="Models: bring your own model file (Keras 3, Keras 2 .h5, SavedModel), check how to feed it",
        icon=":material/upload_file:",
    )
    st.page_link(
        "pages/6_Study.py",
        label="Study: where every block looks over a whole folder, on the animal or not, with error bars",
        icon=":material/query_stats:",
    )
    st.page_link(
        "pages/7_Leaderboard.py",
        label="Leaderboard: which method at which layer to trust for each model, measured on labelled photos",
        icon=":material/leaderboard:",
    )


@asynccontextmanager
async def at_start(_app):
    """Start loading and tracing the models as the server starts, before any browser connects."""
    # Streamlit treats an app with a pages/ folder as a folder-of-pages app until some run has
    # called st.navigation: a first visit straight to /Inspect would run that page alone, with
    # a bare page list and none of main(). This app always calls st.navigation, so say so now.
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
    warmup.start()
    yield


def main() -> None:
    """Lay out the navigation, say what is still warming up, and run the page asked for."""
    st.set_page_config(page_title="What does the network look at?", page_icon="🐾", layout="wide")
    navigation = st.navigation(
        [
            st.Page(home, title="Home", icon=":material/home:", default=True),
            st.Page("pages/1_Inspect.py", title="Inspect", icon=":material/search:", url_path="Inspect"),
            st.Page(
                "pages/2_Layer_depth.py",
                title="Layer depth",
                icon=":material/layers:",
                url_path="Layer_depth",
            ),
            st.Page(
                "pages/3_Training_curves.py",
                title="Training curves",
                icon=":material/show_chart:",
                url_path="Training_curves",
            ),
            st.Page("pages/4_Errors.py", title="Errors", icon=":material/report:", url_path="Errors"),
            st.Page("pages/5_Models.py", title="Models", icon=":material/upload_file:", url_path="Models"),
            st.Page("pages/6_Study.py", title="Study", icon=":material/query_stats:", url_path="Study"),
            st.Page(
                "pages/7_Leaderboard.py",
                title="Leaderboard",
                icon=":material/leaderboard:",
                url_path="Leaderboard",
            ),
        ]
    )
    # On a fresh server, start loading and tracing the models at once, whichever page is opened,
    # and say what is still warming up while a page waits for it.
    warm_up = warmup.start()
    note = st.empty()
    if not warm_up.done:
        note.caption(f":material/hourglass_top: Warming up (first start only): {warm_up.summary()}")
    if navigation.title != "Home":  # home() shows its title first, then waits
        warm_up.wait_for_tensorflow()  # every page imports TensorFlow; one thread at a time
    warm_up.page_started()  # background compiles wait until no page has run for a while
    try:
        navigation.run()
    finally:
        note.empty()
        warm_up.page_finished()


if __name__ == "__main__":  # Streamlit runs this file as the app's script, once per page view
    main()
else:
    # `streamlit run app.py` imports this file once, finds this st.App and serves it (the
    # script above is still this file): the lifespan hook runs as the server starts.
    app = st.App(__file__, lifespan=at_start)
