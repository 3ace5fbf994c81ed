"""Home: which models are loaded, on which device, and where to go next.

Run with:  streamlit run app.py
"""

import streamlit as st

from explain.device import describe_device
from ui.state import sidebar_models, try_load


def home() -> None:
    """The home page's content."""
    st.title("What does the network look at?")
    st.write(
        "Explain cat-vs-dog (and other) image classifiers: predictions, feature maps and class "
        "activation maps (Grad-CAM and relatives), layer by layer."
    )

    entries = sidebar_models()
    st.caption(f"Computing on: **{describe_device()}**")

    rows, problems = [], []
    progress = st.progress(0.0, text="Loading models…") if entries else None
    for i, entry in enumerate(entries):
        loaded, error = try_load(entry)
        if progress:
            progress.progress((i + 1) / len(entries), text=f"Loaded {entry.name}")
        if error:
            problems.append(f"**{entry.name}** ({entry.path.name}): {error}")
            continue
        card, explainer = loaded.card, loaded.explainer
        test = card.test or {}
        rows.append(
            {
                "model": loaded.name,
                "architecture": card.architecture,
                "parameters": f"{loaded.parameters / 1e6:.1f} M",
                "input": "×".join(str(s) for s in explainer.input_shape),
                "classes": ", ".join(explainer.class_names),
                "test accuracy": f"{test['accuracy']:.2%}" if "accuracy" in test else "not evaluated",
                "test photos": test.get("n", ""),
                "explainable layers": f"{len(explainer.layers)} ({len(explainer.layers.blocks)} blocks)",
                "source": entry.source,
            }
        )
    if progress:
        progress.empty()
    if rows:
        st.subheader("Models")
        st.dataframe(rows, hide_index=True, width="stretch")
    elif not problems:
        st.warning(
            "No models found: put .keras files with their cards in models/shipped, or set "
            "CVD_MODELS_DIR (or the sidebar field) to a folder of them."
        )
    for message in problems:
        st.error(message)
    warnings = {row["model"]: None for row in rows}
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


st.set_page_config(page_title="What does the network look at?", page_icon="🐾", layout="wide")
navigation = st.navigation(
    [
        st.Page(home, title="Home", icon=":material/home:", default=True),
        st.Page("pages/1_Inspect.py", title="Inspect", icon=":material/search:", url_path="Inspect"),
        st.Page(
            "pages/2_Layer_depth.py", title="Layer depth", icon=":material/layers:", url_path="Layer_depth"
        ),
        st.Page(
            "pages/3_Training_curves.py",
            title="Training curves",
            icon=":material/show_chart:",
            url_path="Training_curves",
        ),
        st.Page("pages/4_Errors.py", title="Errors", icon=":material/report:", url_path="Errors"),
    ]
)
navigation.run()
