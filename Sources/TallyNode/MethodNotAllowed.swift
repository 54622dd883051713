import Foundation
import Hummingbird

/// The methods the API's OpenAPI document (docs/openapi.yaml, served at
/// `/openapi.json`) declares for each path, so a known path asked with another
/// method is told which ones it takes instead of "not found".
struct DeclaredMethods: Sendable {
    struct Route: Sendable {
        /// The template's segments; nil where it has a parameter (`{hash}`).
        let segments: [String?]
        let methods: [HTTPRequest.Method]
    }

    let routes: [Route]
    /// A path item's keys that are operations (others: `parameters`, `summary`, …).
    static let operationKeys: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// The served document's routes.
    static let api = DeclaredMethods(openAPIJSON: OpenAPIDocument.json)

    init(openAPIJSON: String) {
        let document = (try? JSONSerialization.jsonObject(with: Data(openAPIJSON.utf8))) as? [String: Any]
        let paths = document?["paths"] as? [String: Any] ?? [:]
        routes = paths.keys.sorted().map { template in
            let operations = paths[template] as? [String: Any] ?? [:]
            return Route(
                segments: Self.segments(template).map { $0.hasPrefix("{") && $0.hasSuffix("}") ? nil : $0 },
                methods: operations.keys.filter(Self.operationKeys.contains).sorted().compactMap { HTTPRequest.Method($0.uppercased()) })
        }
    }

    /// The methods declared for `path`, nil when no route matches it. A route with
    /// more literal segments wins (`/blocks/latest` over `/blocks/{height}`).
    func methods(forPath path: String) -> [HTTPRequest.Method]? {
        let asked = Self.segments(path)
        let matching = routes.filter { route in
            route.segments.count == asked.count && zip(route.segments, asked).allSatisfy { $0 == nil || $0 == $1 }
        }
        return matching.max { $0.segments.compactMap { $0 }.count < $1.segments.compactMap { $0 }.count }?.methods
    }

    private static func segments(_ path: String) -> [String] { path.split(separator: "/").map(String.init) }
}

/// Requests the router found no handler for, in the API's error shape: `405
/// method_not_allowed` with an `Allow` header (RFC 9110 §15.5.6) for a path the API
/// declares with other methods, else `404 not_found`. Added to the router last, so it
/// wraps only the not-found path.
struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    let declared: DeclaredMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do { return try await next(request, context) } catch let error as HTTPError where error.status == .notFound {
            var response: Response
            if let allowed = declared.methods(forPath: request.uri.path), !allowed.isEmpty, !allowed.contains(request.method) {
                let allow = allowed.map(\.rawValue).joined(separator: ", ")
                response = try HTTPAPI.error(
                    .methodNotAllowed, "method_not_allowed", "\(request.method.rawValue) is not allowed here; this path takes \(allow)")
                response.headers[.allow] = allow
            } else {
                response = try HTTPAPI.error(.notFound, "not_found", "no such route (docs/API.md lists them)")
            }
            // A HEAD response carries no body.
            if request.method == .head { response.body = ResponseBody() }
            return response
        }
    }
}
