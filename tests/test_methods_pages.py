"""The method selectors of the pages offer the registry's methods (explain.methods)."""

from __future__ import annotations

from explain.methods import ONE_PASS, names
from tests.test_pages import assert_clean, run, user_models  # noqa: F401 - the fixture


def test_layer_depth_offers_every_one_pass_cam_and_draws_eigen_cam(user_models):  # noqa: F811
    at = run("pages/2_Layer_depth.py", depth_left="tiny", depth_right="tiny", depth_method="eigencam")
    assert_clean(at)
    assert at.selectbox(key="depth_method").options == [
        "Grad-CAM",
        "Grad-CAM++",
        "Layer-CAM",
        "HiResCAM",
        "XGrad-CAM",
        "Eigen-CAM",
    ]
    assert len(names(ONE_PASS)) == 6
    assert len(at.get("image")) >= 4
    at.selectbox(key="depth_method").set_value("hirescam").run()
    assert_clean(at)
