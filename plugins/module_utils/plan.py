"""Reading the published plan (ollama_plan, after the fit check): one reading for the plan's table, status and
the fleet picture."""


def planned_use(instance):
    """What the fit check planned for INSTANCE (an instance of ollama_fit_check's plan): ({model: its share of
    the VRAM}, the instance's total), where a share is the model's allocation in the check of the models
    together and the total theirs with the reserve; for an instance with one known model, its own estimate
    for both. Empty and None before the check (a bare plan)."""
    fits = {f["model"]: f["estimate"]["total"] for f in instance.get("fit", []) if "estimate" in f}
    together = instance.get("together") or {}
    if together.get("shares"):
        return {s["model"]: s["bytes"] for s in together["shares"]}, together["total"]
    return fits, max(fits.values(), default=None)
