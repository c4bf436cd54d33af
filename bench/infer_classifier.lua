-- wrk script: one-row V2 JSON inference on the bundled `classifier` example.
wrk.method = "POST"
wrk.path = "/v2/models/classifier/infer"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'

function response(status, headers, body)
  if status ~= 200 then
    wrk.thread:stop()
  end
end
