"""The loop's policies, one module each, behind one interface (:mod:`.base`); importing this
package registers them all."""

from smolmix.loop.policies import (  # noqa: F401  (each registers itself)
    excess_loss,
    odm,
    static,
    temperature,
    uniform,
    verdict,
)
