/*
 * Reads the pipeline's Nextflow and config files with the real Groovy 4 parser and runtime, so the
 * tests can check them without a Nextflow installation (tests/nextflow/harness.py drives it).
 *
 *   parse   FILE...      syntax check (Groovy CompilationUnit up to the CONVERSION phase)
 *   inspect FILE...      structure as JSON: includes, processes (directives, input/output/script/stub
 *                        sections), workflows (take/emit), params used, config params/selectors/profiles
 *   render  REQUEST.json evaluates a process as Nextflow would for one task: params from the config
 *                        files, ext.* and publishDir from the withName selectors, the directives, the
 *                        inputs, the when/script or stub section and the output declarations
 *   match   REQUEST.json output glob patterns against the files of a task folder (Java glob syntax)
 *   call    REQUEST.json calls a top-level function of a .nf file (its Groovy source) with given arguments
 *   config  REQUEST.json a config file resolved as `nextflow config -o json` shows it: includeConfig
 *                        followed, the chosen profiles applied, closures left unevaluated
 *   setting REQUEST.json one process setting (cpus, errorStrategy, ...) for a task, from the configs:
 *                        the process default, then matching withLabel, then withName, closures evaluated
 *   serve                the same commands, one JSON request per stdin line (one JVM for a test session)
 *
 * Every name that is not bound (an undeclared param, a variable the script never defines, a function
 * Nextflow would not know) stops the command with exit status 2: nothing is skipped or guessed.
 */

import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import org.codehaus.groovy.ast.ASTNode
import org.codehaus.groovy.ast.CodeVisitorSupport
import org.codehaus.groovy.ast.expr.ArgumentListExpression
import org.codehaus.groovy.ast.expr.BinaryExpression
import org.codehaus.groovy.ast.expr.CastExpression
import org.codehaus.groovy.ast.expr.ClosureExpression
import org.codehaus.groovy.ast.expr.ConstantExpression
import org.codehaus.groovy.ast.expr.Expression
import org.codehaus.groovy.ast.expr.MethodCallExpression
import org.codehaus.groovy.ast.expr.PropertyExpression
import org.codehaus.groovy.ast.expr.VariableExpression
import org.codehaus.groovy.ast.stmt.BlockStatement
import org.codehaus.groovy.ast.stmt.ExpressionStatement
import org.codehaus.groovy.ast.stmt.Statement
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.MultipleCompilationErrorsException
import org.codehaus.groovy.control.Phases
import org.codehaus.groovy.control.messages.SyntaxErrorMessage

import java.nio.file.FileSystems
import java.nio.file.Files
import java.nio.file.Path
import java.nio.file.Paths
import java.util.regex.Pattern

class HarnessError extends RuntimeException {
    HarnessError(String message) { super(message) }
}

/** Nextflow's error(): the run stops with this one line. */
class NextflowError extends RuntimeException {
    NextflowError(String message) { super(message) }
}

/** A map whose missing keys are errors (task, params, workflow): Nextflow would fail or warn there. */
class StrictMap extends LinkedHashMap {
    String what

    StrictMap(String what, Map values) {
        super(values)
        this.what = what
    }

    @Override
    Object get(Object key) {
        if (!containsKey(key)) {
            throw new MissingPropertyException("${what}.${key} is not defined", key as String, StrictMap)
        }
        return super.get(key)
    }
}

/** A host pipeline's params: what it declares; any other name is null, as Nextflow gives it (with a warning). */
class HostParams extends LinkedHashMap {
    Set<String> undefined = new TreeSet<>()

    HostParams(Map values) { super(values) }

    @Override
    Object get(Object key) {
        if (!containsKey(key)) {
            undefined << (key as String)
            return null
        }
        return super.get(key)
    }
}

/** An undeclared name in an input/output declaration (`val(meta)`, `emit: h5ad`); never printable. */
class Name {
    String name

    Name(String name) { this.name = name }

    @Override
    String toString() { throw new HarnessError("unresolved name '${name}' used as a value") }
}

/** A map given as an input value (meta): told apart from Groovy's named-argument maps. */
class ValueMap extends LinkedHashMap {
    ValueMap(Map values) { super(values) }
}

/** A staged input file as a process script sees it: its file name inside the task folder. */
class StagedPath {
    String name
    String source

    StagedPath(String name, String source) {
        this.name = name
        this.source = source
    }

    String getBaseName() { name.contains('.') ? name.substring(0, name.lastIndexOf('.')) : name }
    String getSimpleName() { name.contains('.') ? name.substring(0, name.indexOf('.')) : name }
    String getExtension() { name.contains('.') ? name.substring(name.lastIndexOf('.') + 1) : '' }

    @Override
    String toString() { name }
}

/** Several staged files: Nextflow prints them blank-separated. */
class StagedList extends ArrayList {
    StagedList(Collection items) { super(items) }

    @Override
    String toString() { join(' ') }
}

/** One recorded directive or declaration call: `path("*.h5ad", emit: h5ad)`. */
class Call {
    String kind
    List args
    Map named
}

/** Binding that fails on unknown names, or (declarations only) turns them into Name tokens. */
class TaskBinding extends Binding {
    boolean declarations = false
    String functions = ''   // the file's top-level functions, which its process sections may call

    TaskBinding(Map values) { super(new LinkedHashMap(values)) }

    @Override
    Object getVariable(String name) {
        if (variables.containsKey(name)) {
            return variables.get(name)
        }
        if (declarations) {
            return new Name(name)
        }
        throw new MissingPropertyException("'${name}' is not defined in this context", name, Binding)
    }
}

/** Base class of every evaluated snippet: records directive/declaration calls, refuses anything else. */
abstract class TaskScript extends Script {
    def methodMissing(String name, Object args) {
        Binding current = getBinding()  // not `binding`: a script resolves that name through its variables
        def calls = current.hasVariable('__calls__') ? current.getVariable('__calls__') : null
        if (calls == null) {
            throw new MissingMethodException(name, TaskScript, args as Object[])
        }
        List positional = (args as List).collect()
        Map named = [:]
        if (positional && positional[0]?.getClass() == LinkedHashMap) {  // named arguments, not a meta map
            named = positional.remove(0) as Map
        }
        def call = new Call(kind: name, args: positional, named: named)
        calls << call
        return call
    }
}

/** The body of a `withName:` selector in a config file. */
class SelectorSettings {
    String selector
    Map ext = [:]
    Map settings = [:]

    def propertyMissing(String name, Object value) { settings[name] = value }

    def propertyMissing(String name) {
        if (name == 'ext') {
            return ext
        }
        throw new MissingPropertyException(name, SelectorSettings)
    }
}

/** The `process { ... }` scope of conf/modules.config: only `withName: 'SELECTOR' { ... }` blocks. */
class ProcessScope {
    List<SelectorSettings> selectors = []

    def methodMissing(String name, Object args) {
        def body = (args as List)
        if (body.size() != 1 || !(body[0] instanceof Closure)) {
            throw new HarnessError("unexpected '${name}' in process scope")
        }
        def settings = new SelectorSettings(selector: name)
        Closure block = (body[0] as Closure).rehydrate(settings, body[0].owner, body[0].thisObject)
        block.resolveStrategy = Closure.DELEGATE_FIRST
        block.call()
        selectors << settings
        return settings
    }

    def propertyMissing(String name, Object value) {
        throw new HarnessError("process.${name} belongs in nextflow.config or conf/base.config, not in conf/modules.config")
    }
}

/** Nextflow's memory unit (`6.GB`): bytes, multiplied by an attempt, printed as Nextflow prints it. */
class MemoryUnit implements Comparable<MemoryUnit> {
    long bytes

    MemoryUnit multiply(Number factor) { new MemoryUnit(bytes: (long) (bytes * factor)) }

    int compareTo(MemoryUnit other) { bytes <=> other.bytes }

    @Override
    String toString() { "${bytes.intdiv(1024L ** 3)} GB" }
}

/** Nextflow's duration (`4.h`): milliseconds, multiplied by an attempt. */
class Duration implements Comparable<Duration> {
    long millis

    Duration multiply(Number factor) { new Duration(millis: (long) (millis * factor)) }

    int compareTo(Duration other) { millis <=> other.millis }

    @Override
    String toString() { "${millis.intdiv(3600000L)}h" }
}

/**
 * One scope of a config file (process, docker, profiles.gpu, withLabel:process_low...), in the order
 * its settings were made. `params` (and what `globals` holds) resolve to the run's values; a missing
 * param is null; any other unknown name opens a nested scope, as Nextflow's config builder does.
 */
class ConfigScope {
    String path = ''
    Map values = [:]
    Map globals
    ConfigEvaluator evaluator
    boolean isParams = false
    Set<String> fixed = [] as Set   // params given on the command line: config files cannot change them

    ConfigScope child(String name) {
        if (!values.containsKey(name)) {
            def scope = new ConfigScope(path: path ? "${path}.${name}" : name, globals: globals, evaluator: evaluator)
            if (path == 'profiles') {   // a profile: its params apply only when it is chosen
                scope.globals = globals + [params: evaluator.paramsScope()]
                scope.values.params = scope.globals.params
            }
            values[name] = scope
        }
        return values[name] as ConfigScope
    }

    def propertyMissing(String name) {
        if (isParams && (values.containsKey(name) || !globals.containsKey(name))) {
            return values[name]
        }
        if (globals.containsKey(name)) {
            return globals[name]
        }
        return child(name)
    }

    def propertyMissing(String name, Object value) {
        if (!(isParams && name in fixed)) {
            values[name] = value
        }
    }

    def methodMissing(String name, Object args) {
        List list = args as List
        if (globals[name] instanceof Closure) {
            return (globals[name] as Closure).call(*list)
        }
        if (name == 'includeConfig' && list.size() == 1) {
            return evaluator.include(this, list[0])
        }
        if (name == 'id' && list.size() == 1 && list[0] instanceof CharSequence) {   // plugins { id 'nf-schema@x' }
            (values.computeIfAbsent('__plugins__') { [] } as List) << list[0].toString()
            return null
        }
        if (name in ['withLabel', 'withName'] && list.size() == 2 && list[1] instanceof Closure) {
            return evaluator.within(child("${name}:${list[0]}".toString()), list[1] as Closure)
        }
        if (list.size() == 1 && list[0] instanceof Closure) {
            return evaluator.within(child(name), list[0] as Closure)
        }
        throw new HarnessError("config: cannot read '${name}(${list.collect { it?.getClass()?.simpleName }.join(', ')})'")
    }
}

/** Evaluates config files with the Groovy runtime, as Nextflow's config builder reads them. */
class ConfigEvaluator {
    Map globals = [:]
    Map cliParams
    List<String> skipped = []
    String currentFile
    ConfigScope root

    ConfigEvaluator(String projectDir, Map cliParams, Map env) {
        this.cliParams = cliParams
        globals.params = paramsScope()
        globals.projectDir = projectDir
        globals.launchDir = projectDir
        globals.__getenv__ = { String name -> env.containsKey(name) ? env[name] : null }
        root = new ConfigScope(globals: globals, evaluator: this)
        root.values.params = globals.params
    }

    ConfigScope paramsScope() {
        def params = new ConfigScope(path: 'params', globals: globals, evaluator: this, isParams: true)
        params.values.putAll(cliParams)
        params.fixed.addAll(cliParams.keySet() as Collection<String>)
        return params
    }

    Object within(ConfigScope target, Closure body) {
        Closure block = body.rehydrate(target, body.owner, body.thisObject)
        block.resolveStrategy = Closure.DELEGATE_FIRST
        block.call()
        return target
    }

    /**
     * A config file's text as one closure run against `target`. Two spellings Groovy reads otherwise
     * are rewritten first: `withLabel: 'x' {` (a labelled statement) and System.getenv (read from
     * the request's environment, so offline and online runs can both be modelled).
     */
    Object evaluate(ConfigScope target, String path) {
        def text = new File(path).text
            .replaceAll(/(withLabel|withName)\s*:\s*('[^']*'|"[^"]*")\s*\{/, '$1($2) {')
            .replace('System.getenv(', '__getenv__(')
        def binding = new Binding(new LinkedHashMap(globals))
        Closure body
        try {
            body = new GroovyShell(NfHarness.classLoader, binding).evaluate("{ ->\n${text}\n}", path.replaceAll(/\W+/, '_')) as Closure
        } catch (Exception error) {
            throw new HarnessError("${path}: cannot evaluate (${error.class.simpleName}: ${error.message})")
        }
        def previous = currentFile
        currentFile = path
        try {
            return within(target, body)
        } finally {
            currentFile = previous
        }
    }

    /** includeConfig: a local file relative to the including one; a URL or /dev/null is not read. */
    Object include(ConfigScope target, Object source) {
        def name = source.toString()
        if (name == '/dev/null') {
            return null
        }
        if (name ==~ /^[a-z]+:\/\/.*/) {
            skipped << name
            return null
        }
        def file = new File(name).isAbsolute() ? new File(name) : new File(new File(currentFile).absoluteFile.parentFile, name)
        if (!file.exists()) {
            throw new HarnessError("includeConfig ${name}: no such file ${file}")
        }
        return evaluate(target, file.path)
    }

    /** Profiles applied as Nextflow applies `-profile a,b`: each one's settings over the rest, in order. */
    void applyProfiles(List<String> names) {
        def profiles = root.values.profiles as ConfigScope
        names.each { name ->
            if (profiles == null || !profiles.values.containsKey(name)) {
                throw new HarnessError("unknown profile '${name}'")
            }
            merge(root, profiles.values[name] as ConfigScope)
        }
    }

    static void merge(ConfigScope into, ConfigScope from) {
        from.values.each { key, value ->
            if (value instanceof ConfigScope && into.values[key] instanceof ConfigScope) {
                merge(into.values[key] as ConfigScope, value as ConfigScope)
            } else if (!(into.isParams && key in into.fixed)) {
                into.values[key] = value
            }
        }
    }

    /** JSON as `nextflow config -o json` prints it: closures as their placeholder, plugins as a list. */
    static Object json(Object value) {
        if (value instanceof ConfigScope) {
            def values = (value as ConfigScope).values
            if (values.keySet() == ['__plugins__'] as Set) {
                return values.__plugins__
            }
            return values.collectEntries { key, item -> [(key): json(item)] }
        }
        if (value instanceof Closure) {
            return '{ closure }'
        }
        if (value instanceof Map) {
            return (value as Map).collectEntries { key, item -> [(key.toString()): json(item)] }
        }
        if (value instanceof Collection) {
            return (value as Collection).collect { json(it) }
        }
        if (value == null || value instanceof Number || value instanceof Boolean) {
            return value
        }
        return value.toString()
    }
}

class NfHarness {

    // Nextflow's unit literals in configs: 6.GB, 4.h
    static {
        Number.metaClass.getMB = { -> new MemoryUnit(bytes: (long) (delegate * 1024L ** 2)) }
        Number.metaClass.getGB = { -> new MemoryUnit(bytes: (long) (delegate * 1024L ** 3)) }
        Number.metaClass.getTB = { -> new MemoryUnit(bytes: (long) (delegate * 1024L ** 4)) }
        Number.metaClass.getH = { -> new Duration(millis: (long) (delegate * 3600000L)) }
        Number.metaClass.getD = { -> new Duration(millis: (long) (delegate * 86400000L)) }
    }

    static void main(String[] args) {
        if (!args) {
            System.err.println('usage: NfHarness parse|inspect FILE... | render|match REQUEST.json | serve')
            System.exit(2)
        }
        if (args[0] == 'serve') {
            serve()
            return
        }
        try {
            def rest = args.length > 1 ? args[1..-1] as List<String> : []
            def request = args[0] in ['render', 'match'] ? readJson(rest[0]) : rest
            println JsonOutput.toJson(dispatch(args[0], request))
        } catch (Throwable error) {
            System.err.println("nf-harness: error: ${describe(error)}")
            System.exit(2)
        }
    }

    /** One JVM for many requests: a JSON object per stdin line, a JSON answer per stdout line. */
    static void serve() {
        def input = new BufferedReader(new InputStreamReader(System.in, 'UTF-8'))
        String line
        while ((line = input.readLine()) != null) {
            def answer
            try {
                def message = new JsonSlurper().parseText(line) as Map
                answer = [result: dispatch(message.command as String, message.request)]
            } catch (Throwable error) {
                answer = [error: "nf-harness: error: ${describe(error)}"]
            }
            println JsonOutput.toJson(answer)
            System.out.flush()
        }
    }

    static Object dispatch(String command, Object request) {
        switch (command) {
            case 'parse': return (request as List<String>).collect { parseReport(it) }
            case 'inspect': return (request as List<String>).collectEntries { [(it): inspect(it)] }
            case 'render': return jsonSafe((request as List).collect { render(it as Map) })
            case 'match': return match(request as Map)
            case 'call': return callFunction(request as Map)
            case 'config': return resolvedConfig(request as Map)
            case 'setting': return jsonSafe(processSetting(request as Map))
            default: throw new HarnessError("unknown command '${command}'")
        }
    }

    static String describe(Throwable error) {
        def cause = error
        while (cause.cause != null && !(cause instanceof HarnessError)) {
            cause = cause.cause
        }
        return "${cause.class.simpleName}: ${cause.message}"
    }

    static Object readJson(String path) { new JsonSlurper().parse(new File(path)) }

    // ---------------------------------------------------------------- parsing

    static Map parseReport(String path) {
        def unit = new CompilationUnit()
        unit.addSource(new File(path))
        try {
            unit.compile(Phases.CONVERSION)
            return [file: path, errors: []]
        } catch (MultipleCompilationErrorsException failure) {
            def errors = failure.errorCollector.errors.collect { message ->
                if (message instanceof SyntaxErrorMessage) {
                    def cause = (message as SyntaxErrorMessage).cause
                    return [line: cause.line, column: cause.startColumn, message: cause.originalMessage]
                }
                return [line: 0, column: 0, message: message.toString()]
            }
            return [file: path, errors: errors]
        }
    }

    static final Map<String, List<Statement>> AST_CACHE = [:]

    /** Top-level statements of a file, or a HarnessError naming its first syntax error. */
    static List<Statement> statements(String path) {
        def key = "${new File(path).canonicalPath}:${new File(path).lastModified()}:${new File(path).length()}"
        if (!AST_CACHE.containsKey(key)) {
            AST_CACHE[key] = parseStatements(path)
        }
        return AST_CACHE[key]
    }

    static List<Statement> parseStatements(String path) {
        def report = parseReport(path)
        if (report.errors) {
            def first = report.errors[0]
            throw new HarnessError("${path}:${first.line}:${first.column}: ${first.message}")
        }
        def unit = new CompilationUnit()
        unit.addSource(new File(path))
        unit.compile(Phases.CONVERSION)
        return unit.AST.modules[0].statementBlock.statements
    }

    /** Exact source text of a node (Groovy columns are 1-based, the last one exclusive). */
    static String source(List<String> lines, ASTNode node) {
        if (node.lineNumber < 1) {
            throw new HarnessError("no source position for ${node.text}")
        }
        if (node.lineNumber == node.lastLineNumber) {
            return lines[node.lineNumber - 1].substring(node.columnNumber - 1, node.lastColumnNumber - 1)
        }
        def text = [lines[node.lineNumber - 1].substring(node.columnNumber - 1)]
        for (int line = node.lineNumber + 1; line < node.lastLineNumber; line++) {
            text << lines[line - 1]
        }
        text << lines[node.lastLineNumber - 1].substring(0, node.lastColumnNumber - 1)
        return text.join('\n')
    }

    /** `name(...)` / `name ...` call with a closure as its last argument: the closure, or null. */
    static ClosureExpression closureArgument(Expression expression) {
        if (!(expression instanceof MethodCallExpression)) {
            return null
        }
        def args = (expression as MethodCallExpression).arguments
        if (args instanceof ArgumentListExpression && args.expressions && args.expressions[-1] instanceof ClosureExpression) {
            return args.expressions[-1] as ClosureExpression
        }
        return null
    }

    static List<Statement> closureStatements(ClosureExpression closure) {
        def code = closure.code
        return code instanceof BlockStatement ? (code as BlockStatement).statements : [code]
    }

    /** `process NAME { ... }` and `workflow NAME { ... }` parse as `process(NAME({ ... }))`. */
    static Map namedBlock(Statement statement, String keyword) {
        if (!(statement instanceof ExpressionStatement)) {
            return null
        }
        def call = (statement as ExpressionStatement).expression
        if (!(call instanceof MethodCallExpression) || (call as MethodCallExpression).methodAsString != keyword) {
            return null
        }
        def args = (call as MethodCallExpression).arguments as ArgumentListExpression
        if (args.expressions.size() != 1) {
            return null
        }
        def inner = args.expressions[0]
        if (inner instanceof ClosureExpression) {
            return [name: '', body: inner, line: statement.lineNumber]
        }
        def body = closureArgument(inner)
        return body == null ? null : [name: (inner as MethodCallExpression).methodAsString, body: body, line: statement.lineNumber]
    }

    /** Statements of a block split by their `label:` (process and workflow sections). */
    static Map<String, List<Statement>> sections(ClosureExpression body, String first) {
        Map<String, List<Statement>> parts = [:]
        def current = first
        closureStatements(body).each { statement ->
            if (statement.statementLabels) {
                current = statement.statementLabels[0]
                if (parts.containsKey(current)) {
                    throw new HarnessError("section '${current}:' appears twice (line ${statement.lineNumber})")
                }
            }
            parts.computeIfAbsent(current) { [] } << statement
        }
        return parts
    }

    static Set<String> paramsUsed(List<Statement> statements) {
        Set<String> used = new TreeSet<>()
        def visitor = new CodeVisitorSupport() {
            @Override
            void visitPropertyExpression(PropertyExpression expression) {
                def object = expression.objectExpression
                if (object instanceof VariableExpression && (object as VariableExpression).name == 'params') {
                    used << expression.propertyAsString
                }
                super.visitPropertyExpression(expression)
            }
        }
        statements.each { it.visit(visitor) }
        return used
    }

    // ---------------------------------------------------------------- inspect

    static Map inspect(String path) {
        def stmts = statements(path)
        def lines = new File(path).readLines()
        return path.endsWith('.config') ? inspectConfig(stmts, lines) : inspectScript(stmts, lines)
    }

    static Map inspectScript(List<Statement> stmts, List<String> lines) {
        def includes = []
        def processes = []
        def workflows = []
        stmts.each { statement ->
            def include = includeOf(statement)
            if (include != null) {
                includes << include
                return
            }
            def process = namedBlock(statement, 'process')
            if (process != null) {
                def parts = sections(process.body as ClosureExpression, 'directives')
                processes << [
                    name      : process.name,
                    line      : process.line,
                    directives: (parts.directives ?: []).collect { directiveOf(it, lines) },
                    sections  : parts.collectEntries { key, value -> [(key): value.collect { source(lines, it) }] },
                ]
                return
            }
            def workflow = namedBlock(statement, 'workflow')
            if (workflow != null) {
                def parts = sections(workflow.body as ClosureExpression, 'main')
                workflows << [
                    name: workflow.name,
                    line: workflow.line,
                    take: (parts.take ?: []).collect { source(lines, it) },
                    main: (parts.main ?: []).collect { source(lines, it) },
                    emit: (parts.emit ?: []).collect { emitName(it) },
                ]
            }
        }
        return [includes: includes, processes: processes, workflows: workflows, params_used: paramsUsed(stmts)]
    }

    /** `include { A; B as C } from './path'`. */
    static Map includeOf(Statement statement) {
        if (!(statement instanceof ExpressionStatement)) {
            return null
        }
        def call = (statement as ExpressionStatement).expression
        if (!(call instanceof MethodCallExpression) || (call as MethodCallExpression).methodAsString != 'from') {
            return null
        }
        def target = (call as MethodCallExpression).objectExpression
        def names = closureArgument(target)
        if (!(target instanceof MethodCallExpression) || (target as MethodCallExpression).methodAsString != 'include' || names == null) {
            return null
        }
        def items = closureStatements(names).collect { item ->
            def expression = (item as ExpressionStatement).expression
            if (expression instanceof CastExpression) {
                def cast = expression as CastExpression
                return [name: (cast.expression as VariableExpression).name, alias: cast.type.name]
            }
            return [name: (expression as VariableExpression).name, alias: null]
        }
        def from = ((call as MethodCallExpression).arguments as ArgumentListExpression).expressions[0]
        return [items: items, from: (from as ConstantExpression).value, line: statement.lineNumber]
    }

    static Map directiveOf(Statement statement, List<String> lines) {
        def expression = (statement as ExpressionStatement).expression
        def name = expression instanceof MethodCallExpression ? (expression as MethodCallExpression).methodAsString : null
        return [name: name, source: source(lines, statement), line: statement.lineNumber]
    }

    static String emitName(Statement statement) {
        def expression = (statement as ExpressionStatement).expression
        if (expression instanceof BinaryExpression && (expression as BinaryExpression).operation.text == '=') {
            return ((expression as BinaryExpression).leftExpression as VariableExpression).name
        }
        if (expression instanceof VariableExpression) {
            return (expression as VariableExpression).name
        }
        throw new HarnessError("cannot read the emit at line ${statement.lineNumber}")
    }

    static Map inspectConfig(List<Statement> stmts, List<String> lines) {
        def result = [params: [:], selectors: [], profiles: [:], include_config: [], plugins: [], scopes: [], assignments: [:]]
        stmts.each { statement -> configStatement(statement, lines, result, null) }
        result.params_used = paramsUsed(stmts)
        return result
    }

    static void configStatement(Statement statement, List<String> lines, Map result, String profile) {
        if (!(statement instanceof ExpressionStatement)) {
            return
        }
        def expression = (statement as ExpressionStatement).expression
        if (expression instanceof BinaryExpression && (expression as BinaryExpression).operation.text == '=') {
            def target = (expression as BinaryExpression).leftExpression
            if (target instanceof PropertyExpression && (target as PropertyExpression).objectExpression.text == 'params' && profile == null) {
                result.params[(target as PropertyExpression).propertyAsString] = source(lines, (expression as BinaryExpression).rightExpression)
            }
            result.scopes << [scope: target.text.tokenize('.')[0], profile: profile]
            if (profile == null) {
                result.assignments[target.text] = source(lines, (expression as BinaryExpression).rightExpression)
            }
            return
        }
        if (!(expression instanceof MethodCallExpression)) {
            return
        }
        def name = (expression as MethodCallExpression).methodAsString
        def body = closureArgument(expression)
        if (name == 'includeConfig') {
            result.include_config << [source: source(lines, ((expression as MethodCallExpression).arguments as ArgumentListExpression).expressions[0]), profile: profile]
            return
        }
        if (body == null) {
            return
        }
        result.scopes << [scope: name, profile: profile]
        switch (name) {
            case 'params':
                closureStatements(body).each { assignment ->
                    def binary = (assignment as ExpressionStatement).expression as BinaryExpression
                    def key = (binary.leftExpression as VariableExpression).name
                    if (profile == null) {
                        result.params[key] = source(lines, binary.rightExpression)
                    }
                }
                break
            case 'profiles':
                closureStatements(body).each { entry ->
                    def call = (entry as ExpressionStatement).expression as MethodCallExpression
                    result.profiles[call.methodAsString] = source(lines, entry)
                    closureStatements(closureArgument(call)).each { configStatement(it, lines, result, call.methodAsString) }
                }
                break
            case 'process':
                closureStatements(body).each { entry ->
                    if (entry.statementLabels) {
                        def call = (entry as ExpressionStatement).expression as MethodCallExpression
                        result.selectors << [kind: entry.statementLabels[0], selector: call.methodAsString, profile: profile,
                                             line: entry.lineNumber, source: source(lines, entry)]
                    }
                }
                break
            case 'plugins':
                closureStatements(body).each { entry -> result.plugins << source(lines, entry) }
                break
        }
    }

    // ---------------------------------------------------------------- evaluation

    static final CompilerConfiguration TASK_COMPILER = new CompilerConfiguration(scriptBaseClass: TaskScript.name)

    static Object evaluate(String code, TaskBinding binding, String where) {
        try {
            return new GroovyShell(NfHarness.classLoader, binding, TASK_COMPILER).evaluate("${code}\n${binding.functions}", where.replaceAll(/\W+/, '_'))
        } catch (HarnessError error) {
            throw new HarnessError("${where}: ${error.message}")
        } catch (Exception error) {
            throw new HarnessError("${where}: cannot render (${error.class.simpleName}: ${error.message})")
        }
    }

    /** Declaration calls (`tuple val(meta), path(x), emit: y`) recorded without running anything. */
    static List<Call> declarations(List<String> codes, TaskBinding binding, String where) {
        binding.declarations = true
        def declared = codes.collect { code ->
            def calls = []
            binding.setVariable('__calls__', calls)
            // Nextflow reads `emit: name` / `topic: name` as names, never as variables: quote them likewise
            def top = evaluate(code.replaceAll(/\b(emit|topic):\s*([A-Za-z_]\w*)/, '$1: \'$2\''), binding, where)
            if (!(top instanceof Call)) {
                throw new HarnessError("${where}: not a declaration: ${code}")
            }
            return top
        }
        binding.variables.remove('__calls__')
        binding.declarations = false
        return declared
    }

    /** params from the `params { }` blocks and `params.x =` lines of the config files, in order. */
    static Map loadParams(List<String> configs, Map overrides, String projectDir) {
        Map params = [:]
        configs.each { path -> params.putAll(configParams(path, projectDir)) }
        overrides.each { key, value ->
            if (!params.containsKey(key)) {
                throw new HarnessError("--${key} is not a parameter declared in ${configs[0]}")
            }
            params[key] = value
        }
        return params
    }

    static final Map<String, Map> PARAMS_CACHE = [:]

    /** One config file's params in order, each value evaluated with the params before it (cached per file version). */
    static Map configParams(String path, String projectDir) {
        def key = "${new File(path).canonicalPath}:${new File(path).lastModified()}:${projectDir}"
        if (PARAMS_CACHE.containsKey(key)) {
            return PARAMS_CACHE[key]
        }
        def lines = new File(path).readLines()
        Map params = [:]
        statements(path).each { statement ->
            def expression = (statement as ExpressionStatement).expression
            def block = closureArgument(expression)
            List<BinaryExpression> assignments = []
            if (block != null && (expression as MethodCallExpression).methodAsString == 'params') {
                assignments = closureStatements(block).collect { (it as ExpressionStatement).expression as BinaryExpression }
            } else if (expression instanceof BinaryExpression && (expression as BinaryExpression).leftExpression.text.startsWith('params.')) {
                assignments = [expression as BinaryExpression]
            }
            assignments.each { assignment ->
                def name = assignment.leftExpression.text.replaceFirst(/^params\./, '')
                def binding = new TaskBinding([projectDir: projectDir, params: new StrictMap('params', params)])
                params[name] = evaluate(source(lines, assignment.rightExpression), binding, "${path}:${assignment.lineNumber}")
            }
        }
        PARAMS_CACHE[key] = params
        return params
    }

    /** The `withName:` selectors of a modules config, evaluated by the Groovy runtime as written. */
    static List<SelectorSettings> loadSelectors(String path, Map params) {
        def scope = new ProcessScope()
        def binding = new TaskBinding([params: params])
        binding.setVariable('process', { Closure body ->
            Closure block = body.rehydrate(scope, body.owner, body.thisObject)
            block.resolveStrategy = Closure.DELEGATE_FIRST
            block.call()
        })
        new GroovyShell(NfHarness.classLoader, binding).parse(new File(path)).run()
        def kinds = inspect(path).selectors.collect { it.kind }.unique()
        if (kinds.any { it != 'withName' }) {
            throw new HarnessError("${path}: only withName selectors belong there, found ${kinds}")
        }
        return scope.selectors
    }

    /** Nextflow's withName rule: a regular expression matching the simple or fully qualified name. */
    static boolean selects(String selector, String simpleName, String qualifiedName) {
        def negated = selector.startsWith('!')
        def pattern = Pattern.compile(negated ? selector.substring(1) : selector)
        def hit = pattern.matcher(simpleName).matches() || pattern.matcher(qualifiedName).matches()
        return negated ? !hit : hit
    }

    static Object resolveSetting(Object value, Map context, String where) {
        if (value instanceof Closure) {
            Closure lazy = (value as Closure).rehydrate(new StrictMap('task context', context), value.owner, value.thisObject)
            lazy.resolveStrategy = Closure.DELEGATE_FIRST
            try {
                return lazy.call()
            } catch (Exception error) {
                throw new HarnessError("${where}: cannot render (${error.class.simpleName}: ${error.message})")
            }
        }
        if (value instanceof Map) {
            return (value as Map).collectEntries { key, item -> [(key): resolveSetting(item, context, "${where}.${key}")] }
        }
        return value
    }

    static Object inputValue(Object value) {
        if (value instanceof Map && (value as Map).containsKey('__decimal__')) {
            return new BigDecimal((value as Map).__decimal__ as String)
        }
        if (value instanceof Map && (value as Map).containsKey('__path__')) {
            def source = (value as Map).__path__ as String
            return new StagedPath(Paths.get(source).fileName.toString(), source)
        }
        if (value instanceof List && value && (value as List).every { it instanceof Map && it.containsKey('__path__') }) {
            return new StagedList((value as List).collect { inputValue(it) })
        }
        if (value instanceof Map) {
            return new ValueMap((value as Map).collectEntries { key, item -> [(key): inputValue(item)] })
        }
        if (value instanceof List) {
            return (value as List).collect { inputValue(it) }
        }
        return value
    }

    /** Nextflow's `stageAs` names: `*` is the file name, a run of `?` the file's 1-based index. */
    static Object staged(Object value, String pattern) {
        if (pattern == null || !(value instanceof StagedPath || value instanceof StagedList)) {
            return value
        }
        def files = value instanceof StagedList ? value as List<StagedPath> : [value as StagedPath]
        def renamed = files.withIndex().collect { StagedPath file, int index ->
            def name = pattern.replace('*', file.name).replaceAll(/\?+/) { String run -> (index + 1).toString().padLeft(run.length(), '0') }
            new StagedPath(name, file.source)
        }
        return value instanceof StagedList ? new StagedList(renamed) : renamed[0]
    }

    /** Binds the declared input names (`tuple val(meta), path(counts)`) to the request's values. */
    static Map bindInputs(List<Call> declared, List values, String where) {
        if (declared.size() != values.size()) {
            throw new HarnessError("${where}: ${declared.size()} inputs declared, ${values.size()} given")
        }
        Map bound = [:]
        declared.eachWithIndex { declaration, index ->
            def elements = declaration.kind == 'tuple' ? declaration.args : [declaration]
            def given = declaration.kind == 'tuple' ? values[index] as List : [values[index]]
            if (elements.size() != given.size()) {
                throw new HarnessError("${where}: input ${index + 1} is a tuple of ${elements.size()}, ${given.size()} given")
            }
            elements.eachWithIndex { element, position ->
                def target = (element as Call).args[0]
                if (!(target instanceof Name)) {
                    throw new HarnessError("${where}: input ${index + 1} does not name a variable")
                }
                def value = staged(inputValue(given[position]), (element as Call).named.stageAs as String)
                def kind = (element as Call).kind
                if (kind == 'path' && !(value instanceof StagedPath || value instanceof StagedList || value == [])) {
                    throw new HarnessError("${where}: input '${(target as Name).name}' is a path, got ${value}")
                }
                bound[(target as Name).name] = value
            }
        }
        return bound
    }

    static Map render(Map request) {
        def module = request.module as String
        def lines = new File(module).readLines()
        def process = inspectScript(statements(module), lines).processes.find { it.name == request.process }
        if (process == null) {
            throw new HarnessError("${module}: no process ${request.process}")
        }
        def where = "${request.process}"
        def qualifiedName = (request.qualified_name ?: request.process) as String
        def projectDir = Paths.get(request.project_dir as String ?: '.').toAbsolutePath().normalize().toString()
        def host = request.params_mode == 'host'
        def params = host ? [:] + ((request.params ?: [:]) as Map) : loadParams(request.configs as List<String>, (request.params ?: [:]) as Map, projectDir)
        def strictParams = host ? new HostParams(params) : new StrictMap('params', params)
        def moduleDir = Paths.get(module).toAbsolutePath().parent.toString()
        def workflow = new StrictMap('workflow', [
            containerEngine: request.container_engine, profile: request.profile ?: 'standard',
            projectDir: projectDir, launchDir: projectDir,
        ])

        def binding = new TaskBinding([params: strictParams, moduleDir: moduleDir, projectDir: projectDir, workflow: workflow])
        binding.functions = functionSources(module).values().join('\n')
        def inputs = bindInputs(declarations(process.sections.input ?: [], binding, "${where} input"), request.inputs as List, where)

        // task.ext.* and publishDir come from the matching withName selectors, evaluated lazily like Nextflow
        def ext = [:]
        def publishDir = []
        def task = new StrictMap('task', [
            ext: ext, cpus: request.cpus ?: 1, attempt: 1, process: qualifiedName, index: 1,
            accelerator: request.accelerator ? [request: request.accelerator, limit: request.accelerator, type: null] : null,
        ])
        def context = [:] + inputs + [task: task, params: strictParams, workflow: workflow]
        if (request.modules_config) {
            loadSelectors(request.modules_config as String, strictParams).findAll { selects(it.selector, request.process as String, qualifiedName) }.each { selector ->
                selector.ext.each { key, value -> ext[key] = resolveSetting(value, context, "${request.modules_config} ${selector.selector} ext.${key}") }
                if (selector.settings.containsKey('publishDir')) {
                    def value = selector.settings.publishDir
                    publishDir = (value instanceof List ? value : [value]).collect { resolveSetting(it, context, "${request.modules_config} ${selector.selector} publishDir") }
                }
            }
        }
        binding.variables.putAll(inputs)
        binding.setVariable('task', task)

        def directives = [:].withDefault { [] }
        (process.directives as List<Map>).each { directive ->
            def calls = []
            binding.setVariable('__calls__', calls)
            evaluate(directive.source as String, binding, "${where} directive ${directive.name}")
            calls.each { Call call -> directives[call.kind] << (call.args.size() == 1 ? call.args[0] : call.args) }
        }
        binding.variables.remove('__calls__')

        def section = (request.section ?: 'script') as String
        def when = process.sections.when ? evaluate(process.sections.when.join('\n'), binding, "${where} when") : true
        if (!process.sections[section]) {
            throw new HarnessError("${where}: no ${section}: section")
        }
        def script = evaluate((process.sections[section] as List).join('\n'), binding, "${where} ${section}")
        if (!(script instanceof CharSequence)) {
            throw new HarnessError("${where}: the ${section}: section does not end with the command string")
        }
        def outputs = declarations(process.sections.output ?: [], binding, "${where} output").collect { declaration ->
            def elements = declaration.kind == 'tuple' ? declaration.args : [declaration]
            return [
                emit    : declaration.named.emit,
                topic   : declaration.named.topic,
                optional: declaration.named.optional ?: false,
                elements: elements.collect { Call element -> [kind: element.kind, value: element.args[0], named: element.named] },
            ]
        }
        return [
            process    : request.process,
            qualified_name: qualifiedName,
            inputs     : inputs.collectEntries { key, value -> [(key): value instanceof StagedPath ? [name: value.name, source: value.source] :
                                                                 value instanceof StagedList ? value.collect { [name: it.name, source: it.source] } : value] },
            directives : directives,
            ext        : ext,
            publish_dir: publishDir,
            when       : when as boolean,
            script     : script.toString(),
            outputs    : outputs,
            params     : params,
            undefined_params: host ? ((HostParams) strictParams).@undefined.toList() : [],
        ]
    }

    /** JSON-ready copy: strings for GStrings and staged files; Name tokens only where they are names. */
    static Object jsonSafe(Object value) {
        if (value instanceof Map) {
            return (value as Map).collectEntries { key, item -> [(key.toString()): jsonSafe(item)] }
        }
        if (value instanceof Collection) {
            return (value as Collection).collect { jsonSafe(it) }
        }
        if (value instanceof Name) {
            return [name: (value as Name).name]
        }
        if (value instanceof Closure) {
            throw new HarnessError('a closure is left where a value belongs')
        }
        if (value == null || value instanceof Number || value instanceof Boolean) {
            return value
        }
        return value.toString()
    }


    // ---------------------------------------------------------------- functions and configs

    /** A top-level `def` of a .nf file, evaluated from its own source; error(...) is reported, not thrown. */
    static Map callFunction(Map request) {
        def path = request.file as String
        def code = functionSources(path)[request.function]
        if (code == null) {
            throw new HarnessError("${path}: no function ${request.function}")
        }
        def binding = new Binding([
            __args__: (request.args as List).collect { inputValue(it) },
            error   : { String message -> throw new NextflowError(message) },
        ])
        try {
            def result = new GroovyShell(NfHarness.classLoader, binding).evaluate("${code}\nreturn ${request.function}(*__args__)")
            return [result: jsonSafe(result)]
        } catch (NextflowError error) {
            return [error: error.message]
        }
    }

    /** Source text of each top-level `def` of a .nf file. */
    static Map<String, String> functionSources(String path) {
        def unit = new CompilationUnit()
        unit.addSource(new File(path))
        unit.compile(Phases.CONVERSION)
        def lines = new File(path).readLines()
        return unit.AST.modules[0].methods.collectEntries { method ->
            [(method.name): (method.lineNumber..method.lastLineNumber).collect { lines[it - 1] }.join('\n')]
        }
    }

    static ConfigEvaluator configOf(Map request) {
        def projectDir = Paths.get(request.project_dir as String ?: '.').toAbsolutePath().normalize().toString()
        def environment = request.containsKey('env') ? (request.env as Map) : System.getenv()
        def evaluator = new ConfigEvaluator(projectDir, (request.params ?: [:]) as Map, environment)
        (request.configs as List<String>).each { evaluator.evaluate(evaluator.root, it) }
        evaluator.applyProfiles((request.profiles ?: []) as List<String>)
        return evaluator
    }

    static Map resolvedConfig(Map request) {
        def evaluator = configOf(request)
        def config = ConfigEvaluator.json(evaluator.root) as Map
        config.remove('profiles')
        return [config: config, skipped_includes: evaluator.skipped]
    }

    /** A process setting as Nextflow resolves it for one task: default < withLabel < withName, later wins. */
    static Object processSetting(Map request) {
        def evaluator = configOf(request)
        def process = evaluator.root.values.process as ConfigScope
        def name = request.process as String
        def qualified = (request.qualified_name ?: name) as String
        def labels = (request.labels ?: []) as List<String>
        def setting = request.setting as String
        def value = process?.values?.get(setting)
        ['withLabel', 'withName'].each { kind ->
            process?.values?.each { key, scope ->
                if (!(key as String).startsWith("${kind}:") || !(scope instanceof ConfigScope)) {
                    return
                }
                def selector = (key as String).substring(kind.length() + 1)
                def hit = kind == 'withLabel' ? labels.any { selects(selector, it, it) } : selects(selector, name, qualified)
                if (hit && (scope as ConfigScope).values.containsKey(setting)) {
                    value = (scope as ConfigScope).values[setting]
                }
            }
        }
        if (value instanceof Closure) {
            def task = new StrictMap('task', [attempt: 1, process: qualified, name: name] + ((request.task ?: [:]) as Map))
            def context = new StrictMap('task context', [task: task, params: (evaluator.root.values.params as ConfigScope).values,
                                                         workflow: new StrictMap('workflow', (request.workflow ?: [:]) as Map)])
            value = resolveSetting(value, context, "${name} ${setting}")
        }
        return value
    }

    // ---------------------------------------------------------------- outputs

    /** Files of a task folder matching each output glob, as Nextflow collects them (no hidden files, no inputs). */
    static Map match(Map request) {
        def workdir = Paths.get(request.workdir as String)
        def inputs = (request.inputs ?: []) as Set
        List<Path> candidates = Files.walk(workdir).withCloseable { stream ->
            stream.filter { it != workdir }.map { workdir.relativize(it) }.collect(java.util.stream.Collectors.toList())
        }
        return (request.patterns as List<String>).collectEntries { pattern ->
            def matcher = FileSystems.default.getPathMatcher("glob:${pattern}")
            def hits = candidates.findAll { relative ->
                def hidden = relative.iterator().any { it.toString().startsWith('.') } && !pattern.startsWith('.')
                !hidden && !inputs.contains(relative.toString()) && matcher.matches(relative)
            }
            [(pattern): hits.collect { it.toString() }.sort()]
        }
    }
}
