# inrroute: is the class signal in meta-learned SIREN weights clustered or routed?
# Thin by design: load and validate the config, include one .smk per stage.
# Every rule calls `inrroute <stage>`; see DESIGN.md section 7.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# common.smk checks the config with the package first (clear messages naming key, value
# and what is allowed); snakemake's validate then fills the schema defaults into `config`.
include: "workflow/rules/common.smk"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/read.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.study.input,
