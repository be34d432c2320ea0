//! Template rendering (minijinja). Templates are embedded in the binary, undefined variables are
//! errors, and a template's trailing newline is kept.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    ("cluster.yaml.j2", include_str!("../templates/cluster.yaml.j2")),
    ("domain.xml.j2", include_str!("../vm-templates/domain.xml.j2")),
    ("network.xml.j2", include_str!("../vm-templates/network.xml.j2")),
    ("pool.xml.j2", include_str!("../vm-templates/pool.xml.j2")),
    ("volume.xml.j2", include_str!("../vm-templates/volume.xml.j2")),
];

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("embedded template {name} is invalid: {e}"));
    }
    env
}

/// Render the embedded template `name` with `context`.
pub fn render<C: Serialize>(name: &str, context: &C) -> Result<String, minijinja::Error> {
    environment().get_template(name)?.render(context)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_embedded_template_parses() {
        let env = super::environment();
        for (name, _) in super::TEMPLATES {
            env.get_template(name).unwrap();
        }
    }
}
